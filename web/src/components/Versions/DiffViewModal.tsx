// Loaded on demand (React.lazy): only someone comparing versions pays for it.
import { useEffect, useId, useRef, useState } from "react";
import type { Diff, Message } from "../../api/client";
import { fetchDiff, fetchVersions } from "../../store/versions";

type Mode = "side" | "inline";
type Change = Diff["changes"][number];

function label(v: Message): string {
  const who = v.role === "user" ? "" : v.model ? ` · ${v.model}` : "";
  return `Version ${v.version_index}${who}`;
}

function Changes({ changes, show }: { changes: Change[]; show: Change["op"][] }) {
  return (
    <div className="diff-text">
      {changes
        .filter((c) => show.includes(c.op))
        .map((c, i) =>
          c.op === "insert" ? <ins key={i}>{c.text}</ins> : c.op === "delete" ? <del key={i}>{c.text}</del> : <span key={i}>{c.text}</span>,
        )}
    </div>
  );
}

/** Compares any two versions of a turn, side by side or inline, with changed words marked. */
export default function DiffViewModal({ message, onClose }: { message: Message; onClose(): void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [versions, setVersions] = useState<Message[]>([]);
  const [fromId, setFromId] = useState<number | null>(null);
  const [toId, setToId] = useState<number>(message.id);
  const [diff, setDiff] = useState<Diff | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [mode, setMode] = useState<Mode>("side");
  const titleId = useId();

  useEffect(() => {
    dialog.current?.showModal();
  }, []);

  useEffect(() => {
    let live = true;
    fetchVersions(message.id).then(
      (items) => {
        if (!live) return;
        setVersions(items);
        // By default: the version before this one (or after it, for the first) against this one.
        const at = items.findIndex((v) => v.id === message.id);
        const other = items[at > 0 ? at - 1 : at + 1] ?? items[0];
        setFromId(other?.id ?? message.id);
      },
      (err: Error) => live && setError(err.message),
    );
    return () => {
      live = false;
    };
  }, [message.id]);

  useEffect(() => {
    if (fromId == null) return;
    const controller = new AbortController();
    setDiff(null);
    fetchDiff(fromId, toId, controller.signal).then(
      (d) => !controller.signal.aborted && (setDiff(d), setError(null)),
      (err: Error) => !controller.signal.aborted && setError(err.message),
    );
    return () => controller.abort();
  }, [fromId, toId]);

  const from = versions.find((v) => v.id === fromId);
  const to = versions.find((v) => v.id === toId);
  const changed = diff?.changes.some((c) => c.op !== "equal");

  return (
    <dialog ref={dialog} className="diff-modal" aria-labelledby={titleId} onClose={onClose}
            onCancel={(e) => { e.preventDefault(); onClose(); }}>
      <header className="diff-head">
        <h2 id={titleId}>Compare versions</h2>
        <button type="button" className="icon" aria-label="Close" onClick={onClose}>✕</button>
      </header>
      <div className="diff-controls">
        <label className="field">
          From
          <select value={fromId ?? ""} onChange={(e) => setFromId(Number(e.target.value))}>
            {versions.map((v) => <option key={v.id} value={v.id}>{label(v)}</option>)}
          </select>
        </label>
        <label className="field">
          To
          <select value={toId} onChange={(e) => setToId(Number(e.target.value))}>
            {versions.map((v) => <option key={v.id} value={v.id}>{label(v)}</option>)}
          </select>
        </label>
        <div className="segmented" role="group" aria-label="Layout">
          <button type="button" className="small" aria-pressed={mode === "side"} onClick={() => setMode("side")}>
            Side by side
          </button>
          <button type="button" className="small" aria-pressed={mode === "inline"} onClick={() => setMode("inline")}>
            Inline
          </button>
        </div>
      </div>
      {error && <p className="form-error" role="alert">{error}</p>}
      {!diff && !error && <p className="muted">Comparing…</p>}
      {diff && !changed && <p className="muted">These versions are the same.</p>}
      {diff && mode === "side" && (
        <div className="diff-side">
          <section aria-label={from ? label(from) : "From"}>
            <h3>{from ? label(from) : "From"}</h3>
            <Changes changes={diff.changes} show={["equal", "delete"]} />
          </section>
          <section aria-label={to ? label(to) : "To"}>
            <h3>{to ? label(to) : "To"}</h3>
            <Changes changes={diff.changes} show={["equal", "insert"]} />
          </section>
        </div>
      )}
      {diff && mode === "inline" && (
        <section className="diff-inline" aria-label="Inline changes">
          <Changes changes={diff.changes} show={["equal", "delete", "insert"]} />
        </section>
      )}
    </dialog>
  );
}
