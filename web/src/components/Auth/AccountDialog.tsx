import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { ApiError, call, client } from "../../api/client";
import { useChat } from "../../store/chat";

/** Change the password (which signs out every other device) or sign out everywhere. */
export function AccountDialog({ onClose }: { onClose(): void }) {
  const logout = useChat((s) => s.logout);
  const dialog = useRef<HTMLDialogElement>(null);
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const id = useId();

  useEffect(() => {
    const el = dialog.current;
    if (el && !el.open) el.showModal();
  }, []);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setDone(false);
    try {
      await call(client.POST("/api/auth/password", { body: { current_password: current, new_password: next } }));
      setCurrent("");
      setNext("");
      setDone(true);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : "Cannot reach the server. Try again.");
    } finally {
      setBusy(false);
    }
  }

  return (
    <dialog ref={dialog} className="session-dialog" aria-labelledby={`${id}-title`} onClose={onClose}>
      <form className="auth-form" onSubmit={submit}>
        <h1 id={`${id}-title`}>Account</h1>
        <label htmlFor={`${id}-current`}>Current password</label>
        <input id={`${id}-current`} type="password" autoComplete="current-password" required autoFocus
               value={current} onChange={(e) => setCurrent(e.target.value)} />
        <label htmlFor={`${id}-new`}>New password</label>
        <input id={`${id}-new`} type="password" autoComplete="new-password" required minLength={8}
               value={next} onChange={(e) => setNext(e.target.value)} />
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        {done && <p role="status">Password changed. Your other devices are signed out.</p>}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "…" : "Change password"}
        </button>
      </form>
      <div className="account-actions">
        <button type="button" className="small" onClick={() => void logout(true)}>
          Sign out everywhere
        </button>
        <button type="button" className="small" onClick={() => dialog.current?.close()}>
          Close
        </button>
      </div>
    </dialog>
  );
}
