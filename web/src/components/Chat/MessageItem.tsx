import type { Message } from "../../api/client";
import { useChat } from "../../store/chat";
import { Markdown } from "./Markdown";
import { MessageMeta } from "./MessageMeta";

interface ErrorMeta {
  error?: { code?: string; message?: string };
}

export function MessageItem({ message }: { message: Message }) {
  const stop = useChat((s) => s.stop);
  const retry = useChat((s) => s.retry);
  const streaming = message.status === "streaming";

  if (message.role === "user") {
    return (
      <article className="message user" aria-label="You" data-message-id={message.id}>
        <div className="bubble">{message.content}</div>
      </article>
    );
  }

  const failed = message.status === "error" || message.status === "interrupted";
  const error = (message.meta as ErrorMeta).error;
  return (
    <article
      className={`message assistant status-${message.status}`}
      aria-label="Assistant"
      aria-busy={streaming}
      data-message-id={message.id}
      data-status={message.status}
    >
      <div className="answer">
        {message.content ? <Markdown text={message.content} /> : streaming ? null : <p className="muted">(no text)</p>}
        {streaming && <span className="caret" aria-hidden="true" />}
      </div>
      {failed && (
        <div className="turn-error" role="alert">
          <span>
            {error?.message ??
              (message.status === "interrupted"
                ? "The server stopped before this answer was finished."
                : "This answer failed.")}
          </span>
          <button type="button" className="small" onClick={() => void retry(message.id)}>
            Retry
          </button>
        </div>
      )}
      {message.status === "cancelled" && <p className="muted stopped">Stopped.</p>}
      <div className="message-foot">
        {streaming ? (
          <button type="button" className="small stop" onClick={() => void stop(message.id)}
                  aria-keyshortcuts="Escape">
            ■ Stop
          </button>
        ) : (
          <MessageMeta message={message} />
        )}
      </div>
    </article>
  );
}
