import { useState } from "react";
import { useChat } from "../../store/chat";
import { AccountDialog } from "../Auth/AccountDialog";
import { ImportButton } from "./ImportButton";
import { ThreadItem } from "./ThreadItem";

interface Props {
  open: boolean;
  onClose(): void;
  theme: "light" | "dark";
  onToggleTheme(): void;
}

export function Sidebar({ open, onClose, theme, onToggleTheme }: Props) {
  const threads = useChat((s) => s.threads);
  const more = useChat((s) => s.threadsCursor);
  const activeId = useChat((s) => s.activeId);
  const user = useChat((s) => s.user);
  const openThread = useChat((s) => s.openThread);
  const loadThreads = useChat((s) => s.loadThreads);
  const logout = useChat((s) => s.logout);
  const [account, setAccount] = useState(false);

  return (
    <nav className={`sidebar${open ? " open" : ""}`} aria-label="Chats">
      <div className="sidebar-head">
        <span className="brand">Convo</span>
        <button type="button" className="icon" onClick={onToggleTheme}
                aria-label={theme === "dark" ? "Use light theme" : "Use dark theme"}>
          {theme === "dark" ? "☀" : "☾"}
        </button>
        <button type="button" className="icon phone-only" onClick={onClose} aria-label="Close chat list">
          ✕
        </button>
      </div>
      <button
        type="button"
        className="new-chat"
        aria-keyshortcuts="Control+Shift+O"
        title="New chat (Ctrl+Shift+O)"
        onClick={() => {
          void openThread(null);
          onClose();
        }}
      >
        + New chat
      </button>
      <ul className="thread-list">
        {threads.map((t) => (
          <ThreadItem key={t.id} thread={t} active={t.id === activeId} onOpen={onClose} />
        ))}
      </ul>
      {threads.length === 0 && <p className="muted empty">No chats yet.</p>}
      {more && (
        <button type="button" className="small load-more" onClick={() => void loadThreads(true)}>
          Show older chats
        </button>
      )}
      <ImportButton />
      <div className="sidebar-foot">
        <span className="muted user-email" title={user?.email}>
          {user?.name || user?.email}
        </span>
        <button type="button" className="small" onClick={() => setAccount(true)}>
          Account
        </button>
        <button type="button" className="small" onClick={() => void logout()}>
          Log out
        </button>
      </div>
      {account && <AccountDialog onClose={() => setAccount(false)} />}
    </nav>
  );
}
