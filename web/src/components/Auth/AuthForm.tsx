import { useId, useState, type FormEvent } from "react";
import { ApiError } from "../../api/client";
import { useChat } from "../../store/chat";

interface Props {
  initialMode?: "login" | "signup";
  email?: string;
  /** Re-login after a lost session offers no sign-up: the page belongs to someone already. */
  loginOnly?: boolean;
}

export function AuthForm({ initialMode = "login", email: initialEmail = "", loginOnly = false }: Props) {
  const authenticate = useChat((s) => s.authenticate);
  const [mode, setMode] = useState<"login" | "signup">(loginOnly ? "login" : initialMode);
  const [email, setEmail] = useState(initialEmail);
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const id = useId();

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await authenticate(mode, email.trim(), password, name.trim());
    } catch (err) {
      setError(err instanceof ApiError ? err.message : "Cannot reach the server. Try again.");
    } finally {
      setBusy(false);
    }
  }

  const title = mode === "login" ? "Log in" : "Create an account";
  return (
    <form className="auth-form" onSubmit={submit} aria-labelledby={`${id}-title`}>
      <h1 id={`${id}-title`}>{title}</h1>
      <label htmlFor={`${id}-email`}>Email</label>
      <input
        id={`${id}-email`}
        type="email"
        autoComplete="email"
        required
        autoFocus={!initialEmail}
        value={email}
        onChange={(e) => setEmail(e.target.value)}
      />
      {mode === "signup" && (
        <>
          <label htmlFor={`${id}-name`}>Name (optional)</label>
          <input id={`${id}-name`} autoComplete="name" value={name} onChange={(e) => setName(e.target.value)} />
        </>
      )}
      <label htmlFor={`${id}-password`}>Password</label>
      <input
        id={`${id}-password`}
        type="password"
        autoComplete={mode === "login" ? "current-password" : "new-password"}
        required
        minLength={mode === "signup" ? 8 : undefined}
        autoFocus={!!initialEmail}
        value={password}
        onChange={(e) => setPassword(e.target.value)}
      />
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={busy}>
        {busy ? "…" : mode === "login" ? "Log in" : "Sign up"}
      </button>
      {!loginOnly && (
        <p className="auth-switch">
          {mode === "login" ? "No account yet?" : "Already have an account?"}{" "}
          <button type="button" className="link" onClick={() => setMode(mode === "login" ? "signup" : "login")}>
            {mode === "login" ? "Sign up" : "Log in"}
          </button>
        </p>
      )}
    </form>
  );
}
