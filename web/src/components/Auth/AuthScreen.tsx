import { AuthForm } from "./AuthForm";

export function AuthScreen() {
  return (
    <main className="auth-screen">
      <div className="auth-card">
        <p className="brand">Convo</p>
        <AuthForm />
      </div>
    </main>
  );
}
