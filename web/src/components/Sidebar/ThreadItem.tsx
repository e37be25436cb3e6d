import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { Thread } from "../../api/client";
import { pathOf } from "../../lib/route";
import { useChat } from "../../store/chat";

interface Props {
  thread: Thread;
  active: boolean;
  onOpen(): void;
}

// The server names the file (Content-Disposition); the session cookie authorises the download.
const EXPORTS = [["md", "Markdown"], ["json", "JSON, every version"], ["zip", "Zip with files"]] as const;

export function ThreadItem({ thread, active, onOpen }: Props) {
  const renameThread = useChat((s) => s.renameThread);
  const deleteThread = useChat((s) => s.deleteThread);
  const openThread = useChat((s) => s.openThread);
  const [mode, setMode] = useState<"view" | "rename" | "delete">("view");
  const [title, setTitle] = useState(thread.title);
  const input = useRef<HTMLInputElement>(null);
  const link = useRef<HTMLAnchorElement>(null);
  const refocus = useRef(false);
  const title_ = thread.title || "New chat";

  useEffect(() => {
    if (mode === "rename") input.current?.select();
    // Back from renaming or a kept chat: the keyboard stays where it was.
    if (mode === "view" && refocus.current) link.current?.focus();
    refocus.current = false;
  }, [mode]);

  function back() {
    refocus.current = true;
    setMode("view");
  }

  function onRenameKey(e: KeyboardEvent<HTMLInputElement>) {
    if (e.key === "Enter") {
      e.preventDefault();
      const next = title.trim();
      if (next && next !== thread.title) void renameThread(thread.id, next);
      back();
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      setTitle(thread.title);
      back();
    }
  }

  if (mode === "rename") {
    return (
      <li className="thread-item editing">
        <input
          ref={input}
          aria-label={`New title for ${title_}`}
          value={title}
          maxLength={300}
          onChange={(e) => setTitle(e.target.value)}
          onKeyDown={onRenameKey}
          onBlur={() => {
            setTitle(thread.title);
            setMode("view");
          }}
        />
      </li>
    );
  }

  if (mode === "delete") {
    return (
      <li className="thread-item confirming" role="group" aria-label={`Delete ${title_}?`}>
        <span className="thread-title">Delete “{title_}”?</span>
        <button type="button" className="danger small" autoFocus onClick={() => void deleteThread(thread.id)}>
          Delete
        </button>
        <button type="button" className="small" onClick={back}>
          Keep
        </button>
      </li>
    );
  }

  return (
    <li className={`thread-item${active ? " active" : ""}`}>
      <a
        ref={link}
        href={pathOf(thread.id)}
        className="thread-link"
        aria-current={active ? "page" : undefined}
        onClick={(e) => {
          if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return; // let the browser open a tab
          e.preventDefault();
          void openThread(thread.id);
          onOpen();
        }}
        onKeyDown={(e) => {
          if (e.key === "F2") {
            e.preventDefault();
            setMode("rename");
          } else if (e.key === "Delete") {
            e.preventDefault();
            setMode("delete");
          }
        }}
      >
        <span className="thread-title">{title_}</span>
      </a>
      <span className="thread-actions">
        <button type="button" className="icon small" aria-label={`Rename ${title_}`} title="Rename (F2)"
                onClick={() => setMode("rename")}>
          ✎
        </button>
        <button type="button" className="icon small" aria-label={`Delete ${title_}`} title="Delete (Del)"
                onClick={() => setMode("delete")}>
          ✕
        </button>
        <details className="export-menu">
          <summary className="icon small" aria-label={`Download ${title_}`} title="Download">⤓</summary>
          <div className="export-links" role="group" aria-label={`Download ${title_} as`}>
            {EXPORTS.map(([format, label]) => (
              <a key={format} href={`/api/threads/${thread.id}/export?format=${format}`} download>{label}</a>
            ))}
          </div>
        </details>
      </span>
    </li>
  );
}
