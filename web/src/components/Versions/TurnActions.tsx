import { lazy, Suspense, useState } from "react";
import type { Message } from "../../api/client";
import { useChat } from "../../store/chat";
import { RegenerateMenu } from "./RegenerateMenu";
import { VersionNav } from "./VersionNav";

const DiffViewModal = lazy(() => import("./DiffViewModal"));

interface Props {
  message: Message;
  /** An answer is being written in this chat: changing the branch now would hide it. */
  busy: boolean;
  onEdit(): void;
}

/** The actions under a turn: its versions, edit, regenerate, compare, branch in a new chat. */
export function TurnActions({ message, busy, onEdit }: Props) {
  const branch = useChat((s) => s.branch);
  const [comparing, setComparing] = useState(false);
  const isAnswer = message.role === "assistant";
  const settled = message.status !== "streaming";
  return (
    <div className="turn-actions" role="toolbar" aria-label={isAnswer ? "Answer actions" : "Message actions"}>
      <VersionNav message={message} disabled={busy} />
      {settled && (
        <>
          <button type="button" className="small" onClick={onEdit} disabled={busy}>
            ✎ Edit
          </button>
          {isAnswer && <RegenerateMenu message={message} disabled={busy} />}
          {message.version_count > 1 && (
            <button type="button" className="small" onClick={() => setComparing(true)}>
              Compare versions
            </button>
          )}
          <button type="button" className="small" onClick={() => void branch(message.id)}>
            Branch in new chat
          </button>
        </>
      )}
      {comparing && (
        <Suspense fallback={null}>
          <DiffViewModal message={message} onClose={() => setComparing(false)} />
        </Suspense>
      )}
    </div>
  );
}
