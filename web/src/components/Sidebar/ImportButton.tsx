import { useRef, useState } from "react";
import { errorOf, withCsrf } from "../../api/client";
import { useChat } from "../../store/chat";

/** Brings chats in from a Convo export (JSON or zip) or ChatGPT's conversations.json. */
export function ImportButton() {
  const input = useRef<HTMLInputElement>(null);
  const loadThreads = useChat((s) => s.loadThreads);
  const openThread = useChat((s) => s.openThread);
  const [status, setStatus] = useState<{ text: string; error: boolean } | null>(null);

  async function upload(file: File) {
    setStatus({ text: `Importing ${file.name}…`, error: false });
    const form = new FormData();
    form.append("file", file);
    try {
      const response = await fetch("/api/import", {
        method: "POST", body: form, credentials: "same-origin", headers: withCsrf("POST", new Headers()),
      });
      if (!response.ok) throw await errorOf(response);
      const { threads } = (await response.json()) as { threads: { id: number; title: string }[] };
      setStatus({ text: `Imported ${threads.length} chat${threads.length === 1 ? "" : "s"}.`, error: false });
      await loadThreads();
      if (threads.length > 0) await openThread(threads[0].id);
    } catch (err) {
      setStatus({ text: (err as Error).message, error: true });
    }
  }

  return (
    <div className="import">
      <button type="button" className="small" onClick={() => input.current?.click()}>
        Import chats…
      </button>
      <input ref={input} type="file" accept=".json,.zip,application/json,application/zip" hidden
             aria-label="Chats to import"
             onChange={(e) => {
               const file = e.target.files?.[0];
               e.target.value = "";
               if (file) void upload(file);
             }} />
      {status && <p className={status.error ? "form-error" : "muted"} role={status.error ? "alert" : "status"}>{status.text}</p>}
    </div>
  );
}
