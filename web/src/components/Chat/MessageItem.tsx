import { useState } from "react";
import type { Message } from "../../api/client";
import { useChat } from "../../store/chat";
import { Sources, type Citation } from "../Attachments/Sources";
import { MessageEditor } from "../Versions/MessageEditor";
import { TurnActions } from "../Versions/TurnActions";
import { Markdown } from "./Markdown";
import { MessageMeta } from "./MessageMeta";

interface AnswerMeta {
  error?: { code?: string; message?: string };
  citations?: Citation[];
}

interface Props {
  message: Message;
  busy: boolean;
  /** A question at the end of the branch that nothing answers yet (edited without a new answer). */
  unanswered?: boolean;
}

export function MessageItem({ message, busy, unanswered = false }: Props) {
  const stop = useChat((s) => s.stop);
  const retry = useChat((s) => s.retry);
  const regenerate = useChat((s) => s.regenerate);
  const highlighted = useChat((s) => s.highlightId === message.id);
  const [editing, setEditing] = useState(false);
  const streaming = message.status === "streaming";
  const mark = highlighted ? " highlighted" : "";

  if (message.role === "user") {
    return (
      <article className={`message user${mark}`} aria-label="You" data-message-id={message.id}>
        {editing ? (
          <MessageEditor message={message} onDone={() => setEditing(false)} />
        ) : (
          <div className="bubble">{message.content}</div>
        )}
        {!editing && unanswered && !busy && (
          <p className="turn-unanswered muted">
            Not answered yet.{" "}
            <button type="button" className="small" onClick={() => void regenerate(message.id)}>
              Answer it
            </button>{" "}
            or send a follow-up below.
          </p>
        )}
        {!editing && <TurnActions message={message} busy={busy} onEdit={() => setEditing(true)} />}
      </article>
    );
  }

  const failed = message.status === "error" || message.status === "interrupted";
  const { error, citations } = message.meta as AnswerMeta;
  return (
    <article
      className={`message assistant status-${message.status}${mark}`}
      aria-label="Assistant"
      aria-busy={streaming}
      data-message-id={message.id}
      data-status={message.status}
    >
      {editing ? (
        <MessageEditor message={message} onDone={() => setEditing(false)} />
      ) : (
        <div className="answer">
          {message.content ? <Markdown text={message.content} /> : streaming ? null : <p className="muted">(no text)</p>}
          {streaming && <span className="caret" aria-hidden="true" />}
        </div>
      )}
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
      {citations && citations.length > 0 && <Sources citations={citations} />}
      <div className="message-foot">
        {streaming ? (
          <button type="button" className="small stop" onClick={() => void stop(message.id)}
                  aria-keyshortcuts="Escape">
            ■ Stop
          </button>
        ) : (
          <MessageMeta message={message} />
        )}
        {!editing && <TurnActions message={message} busy={busy} onEdit={() => setEditing(true)} />}
      </div>
    </article>
  );
}
