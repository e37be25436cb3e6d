import { useEffect, useId, useRef, useState } from "react";
import { contentUrl } from "../../store/attachments";

export interface Citation {
  n?: number;
  chunk_id: number;
  attachment_id: number;
  filename: string;
  snippet?: string;
  text?: string;
  score?: number;
}

/** The passages an answer was grounded on, numbered as the answer cites them; each opens in a panel. */
export function Sources({ citations }: { citations: Citation[] }) {
  const [open, setOpen] = useState<Citation | null>(null);
  if (citations.length === 0) return null;
  return (
    <section className="sources" aria-label="Sources">
      <span className="muted">Sources</span>
      <ol>
        {citations.map((c, i) => (
          <li key={c.chunk_id}>
            <button type="button" className="small source" onClick={() => setOpen(c)}
                    aria-label={`Source ${c.n ?? i + 1}: ${c.filename}`}>
              <span className="source-n">[{c.n ?? i + 1}]</span> {c.filename}
            </button>
          </li>
        ))}
      </ol>
      {open && <SourcePanel citation={open} onClose={() => setOpen(null)} />}
    </section>
  );
}

function SourcePanel({ citation, onClose }: { citation: Citation; onClose(): void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const text = citation.snippet ?? citation.text ?? "";
  return (
    <dialog ref={dialog} className="source-panel" aria-labelledby={titleId} onClose={onClose}
            onCancel={(e) => { e.preventDefault(); onClose(); }}>
      <header className="diff-head">
        <h2 id={titleId}>
          [{citation.n ?? "·"}] {citation.filename}
        </h2>
        <button type="button" className="icon" aria-label="Close" onClick={onClose}>✕</button>
      </header>
      <blockquote className="passage" aria-label="Passage">{text}</blockquote>
      <p>
        <a href={contentUrl(citation.attachment_id)} download={citation.filename}>Download {citation.filename}</a>
      </p>
    </dialog>
  );
}
