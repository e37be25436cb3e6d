import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { Message } from "../../api/client";
import { useChat } from "../../store/chat";

/**
 * Edits a message in place. Enter saves (a user message then gets a fresh answer; an answer is saved
 * as a hand-corrected version), Shift+Enter adds a line, Esc cancels. The old version is kept.
 */
export function MessageEditor({ message, onDone }: { message: Message; onDone(): void }) {
  const edit = useChat((s) => s.edit);
  const [text, setText] = useState(message.content);
  const [saving, setSaving] = useState(false);
  const area = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    const el = area.current;
    if (!el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);

  useEffect(() => {
    const el = area.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 360)}px`;
  }, [text]);

  const unchanged = text.trim() === "" || text === message.content;

  async function save() {
    if (unchanged || saving) return;
    setSaving(true);
    const ok = await edit(message.id, text);
    setSaving(false);
    if (ok) onDone();
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void save();
    } else if (e.key === "Escape") {
      // Handled here: the page's Esc (stop the answer) must not fire as well.
      e.preventDefault();
      e.stopPropagation();
      onDone();
    }
  }

  const isUser = message.role === "user";
  return (
    <form className="message-editor" aria-label={isUser ? "Edit message" : "Correct answer"}
          onSubmit={(e) => { e.preventDefault(); void save(); }}>
      <textarea ref={area} aria-label={isUser ? "Edited message" : "Corrected answer"} value={text} rows={2}
                onChange={(e) => setText(e.target.value)} onKeyDown={onKeyDown} />
      <div className="editor-bar">
        <span className="muted">Enter {isUser ? "saves and answers again" : "saves"} · Shift+Enter new line · Esc cancels</span>
        <span>
          <button type="button" className="small" onClick={onDone}>Cancel</button>{" "}
          <button type="submit" className="small primary" disabled={unchanged || saving}>
            {isUser ? "Save & answer" : "Save"}
          </button>
        </span>
      </div>
    </form>
  );
}
