import { useEffect, useState } from "react";
import { useShallow } from "zustand/react/shallow";
import type { Attachment } from "../../api/client";
import { formatBytes } from "../../lib/format";
import { contentUrl, useFiles } from "../../store/attachments";

const EMPTY: Attachment[] = [];

function status(a: Attachment): string {
  if (a.status === "ready") return `ready · ${a.chunk_count} ${a.chunk_count === 1 ? "passage" : "passages"}`;
  if (a.status === "failed") return a.error || "could not be read";
  return a.status === "processing" ? "indexing…" : "waiting to be indexed…";
}

/** The chat's files: uploads in flight with their progress, then each file with its indexing status. */
export function FileList({ threadId }: { threadId: number | null }) {
  const files = useFiles((s) => (threadId == null ? EMPTY : (s.byThread[threadId] ?? EMPTY)));
  const uploads = useFiles(useShallow((s) => s.uploads.filter((u) => u.threadId === threadId)));
  const load = useFiles((s) => s.load);
  const remove = useFiles((s) => s.remove);
  const dismiss = useFiles((s) => s.dismiss);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    if (threadId != null) void load(threadId);
  }, [threadId, load]);

  if (files.length === 0 && uploads.length === 0) return null;
  return (
    <section className="file-list" aria-label="Files in this chat">
      <ul>
        {uploads.map((u) => (
          <li key={`u${u.key}`} className={u.error ? "file failed" : "file uploading"} aria-label={u.filename}>
            <span className="file-name">{u.filename}</span>
            {u.error ? (
              <>
                <span className="file-status" role="alert">{u.error}</span>
                <button type="button" className="icon small" aria-label={`Dismiss ${u.filename}`} onClick={() => dismiss(u.key)}>✕</button>
              </>
            ) : (
              <>
                <progress max={u.size || 1} value={u.loaded} aria-label={`Uploading ${u.filename}`} />
                <span className="file-status">{u.size ? Math.round((100 * u.loaded) / u.size) : 0}%</span>
              </>
            )}
          </li>
        ))}
        {files.map((a) => (
          <li key={a.id} className={`file status-${a.status}`} aria-label={a.filename} data-status={a.status}>
            <a className="file-name" href={contentUrl(a.id)} download={a.filename}>{a.filename}</a>
            <span className="muted file-size">{formatBytes(a.size)}</span>
            <span className="file-status" role={a.status === "failed" ? "alert" : undefined}>{status(a)}</span>
            <button type="button" className="icon small" aria-label={`Remove ${a.filename}`}
                    onClick={() => remove(a).catch((err: Error) => setProblem(err.message))}>
              ✕
            </button>
          </li>
        ))}
      </ul>
      {problem && <p className="form-error" role="alert">{problem}</p>}
    </section>
  );
}
