import { lazy, Suspense, useEffect, useState } from "react";
import { AuthScreen } from "./components/Auth/AuthScreen";
import { SessionDialog } from "./components/Auth/SessionDialog";
import { ChatView } from "./components/Chat/ChatView";
import { Composer } from "./components/Composer/Composer";
import { DropZone } from "./components/Attachments/DropZone";
import { Sidebar } from "./components/Sidebar/Sidebar";
import { threadFromPath } from "./lib/route";
import { useTheme } from "./lib/theme";
import { useChat } from "./store/chat";

const SearchPalette = lazy(() => import("./components/Search/SearchPalette"));

export function App() {
  const booted = useChat((s) => s.booted);
  const user = useChat((s) => s.user);
  const authLost = useChat((s) => s.authLost);
  const activeId = useChat((s) => s.activeId);
  const title = useChat((s) => s.thread?.title);
  const boot = useChat((s) => s.boot);
  const openThread = useChat((s) => s.openThread);
  const [theme, toggleTheme] = useTheme();
  const [menuOpen, setMenuOpen] = useState(false);
  // Mounted on first use (the palette is loaded lazily), then kept so a second open is instant.
  const [searchUsed, setSearchUsed] = useState(false);
  const [searchOpen, setSearchOpen] = useState(false);
  const openSearch = () => {
    setSearchUsed(true);
    setSearchOpen(true);
  };

  useEffect(() => {
    void boot();
  }, [boot]);

  useEffect(() => {
    const onPop = () => void openThread(threadFromPath());
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, [openThread]);

  // Ctrl/Cmd+Shift+O starts a new chat, as in other chat apps.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.key.toLowerCase() === "o") {
        e.preventDefault();
        void openThread(null);
      } else if ((e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && e.key.toLowerCase() === "k") {
        e.preventDefault();
        setSearchUsed(true);
        setSearchOpen((o) => !o);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [openThread]);

  useEffect(() => {
    document.title = title ? `${title} · Convo` : "Convo";
  }, [title]);

  if (!booted) return <p className="booting muted">Loading…</p>;
  if (!user) return <AuthScreen />;

  return (
    <div className="app">
      <Sidebar open={menuOpen} onClose={() => setMenuOpen(false)} theme={theme} onToggleTheme={toggleTheme} />
      {menuOpen && <div className="scrim phone-only" onClick={() => setMenuOpen(false)} aria-hidden="true" />}
      <DropZone className="main">
        <header className="topbar">
          <button type="button" className="icon phone-only" aria-label="Open chat list" aria-expanded={menuOpen}
                  onClick={() => setMenuOpen(true)}>
            ☰
          </button>
          <h1 className="thread-heading">{activeId == null ? "New chat" : title || "Untitled chat"}</h1>
          <button type="button" className="small search-open" aria-keyshortcuts="Control+K Meta+K" onClick={openSearch}>
            Search <kbd>Ctrl K</kbd>
          </button>
        </header>
        <ChatView />
        <Composer />
      </DropZone>
      {authLost && <SessionDialog />}
      {searchUsed && user && (
        <Suspense fallback={null}>
          <SearchPalette open={searchOpen} onOpenChange={setSearchOpen} />
        </Suspense>
      )}
    </div>
  );
}
