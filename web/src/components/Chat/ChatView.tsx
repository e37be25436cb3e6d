import { useEffect, useLayoutEffect, useRef } from "react";
import { useChat } from "../../store/chat";
import { MessageItem } from "./MessageItem";

export function ChatView() {
  const messages = useChat((s) => s.messages);
  const loading = useChat((s) => s.loadingThread);
  const activeId = useChat((s) => s.activeId);
  const stop = useChat((s) => s.stop);
  const highlightId = useChat((s) => s.highlightId);
  const scroller = useRef<HTMLDivElement>(null);
  const pinned = useRef(true);

  // Esc stops the answer being written, from anywhere on the page, unless it is closing a dialog
  // (a <dialog>, or the search palette).
  const streamingId = messages.find((m) => m.role === "assistant" && m.status === "streaming")?.id;
  useEffect(() => {
    if (streamingId == null) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape" && !e.defaultPrevented && !document.querySelector("dialog[open], [role=dialog]")) void stop(streamingId);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [streamingId, stop]);

  // Follow the answer as it grows, unless the reader scrolled up to read something else.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  }, [messages]);
  useEffect(() => {
    pinned.current = true;
  }, [activeId]);

  // A message opened from search: bring it into view once its branch is on screen.
  const highlightShown = highlightId != null && messages.some((m) => m.id === highlightId);
  useEffect(() => {
    if (!highlightShown) return;
    const el = scroller.current?.querySelector<HTMLElement>(`[data-message-id="${highlightId}"]`);
    if (!el) return;
    pinned.current = false;
    el.scrollIntoView({ block: "center" });
  }, [highlightShown, highlightId]);

  return (
    <div
      className="chat-scroll"
      ref={scroller}
      onScroll={(e) => {
        const el = e.currentTarget;
        pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
      }}
    >
      <section className="chat" role="log" aria-label="Conversation" aria-busy={loading}>
        {messages.length === 0 && !loading && (
          <div className="empty-chat">
            <h2>{activeId == null ? "New chat" : "No messages yet"}</h2>
            <p className="muted">Ask anything. Enter sends, Shift+Enter adds a line, Esc stops an answer.</p>
          </div>
        )}
        {messages
          .filter((m) => m.role !== "system")
          .map((m, i, shown) => (
            <MessageItem
              key={m.id}
              message={m}
              busy={streamingId != null}
              unanswered={m.role === "user" && i === shown.length - 1}
            />
          ))}
      </section>
    </div>
  );
}
