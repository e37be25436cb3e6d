import { useEffect, useRef } from "react";
import { useChat } from "../../store/chat";
import { AuthForm } from "./AuthForm";

/** Shown over the page when the session runs out; the page underneath (and its draft) stays as it was. */
export function SessionDialog() {
  const email = useChat((s) => s.user?.email ?? "");
  const code = useChat((s) => s.authLost);
  const dialog = useRef<HTMLDialogElement>(null);

  useEffect(() => {
    const el = dialog.current;
    if (el && !el.open) el.showModal();
  }, []);

  return (
    <dialog
      ref={dialog}
      className="session-dialog"
      aria-label="Log in again"
      onCancel={(e) => e.preventDefault() /* nothing works until the user logs in */}
    >
      <p className="session-note">
        {code === "session_expired" ? "Your session has expired." : "You are logged out."} Log in again; what
        you were typing is kept.
      </p>
      <AuthForm email={email} loginOnly />
    </dialog>
  );
}
