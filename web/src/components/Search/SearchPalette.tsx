// Loaded on demand (React.lazy) the first time Ctrl/Cmd+K is pressed: cmdk and its dialog stay out of
// the main bundle.
import { Command } from "cmdk";
import { useEffect, useRef, useState } from "react";
import type { SearchHit } from "../../api/client";
import { useChat } from "../../store/chat";
import { groupByThread, searchAll, snippetParts } from "../../store/search";

const DEBOUNCE_MS = 150;

function Snippet({ html }: { html: string }) {
  return (
    <span className="snippet">
      {snippetParts(html).map((part, i) => (part.mark ? <mark key={i}>{part.text}</mark> : <span key={i}>{part.text}</span>))}
    </span>
  );
}

function kindLabel(hit: SearchHit): string {
  if (hit.kind === "thread") return "Title";
  if (hit.kind === "attachment") return "File";
  return hit.role === "user" ? "You" : hit.role === "assistant" ? "Answer" : (hit.role ?? "Message");
}

/** Ctrl/Cmd+K: search everything said, results grouped by chat; Enter opens the message on its branch. */
export default function SearchPalette({ open, onOpenChange }: { open: boolean; onOpenChange(open: boolean): void }) {
  const openAt = useChat((s) => s.openAt);
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<SearchHit[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [searching, setSearching] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const latest = useRef(0);

  // Results follow the typing: a pause of DEBOUNCE_MS sends the query, a newer query aborts the older
  // request, and an answer that is not for the latest query is dropped all the same.
  useEffect(() => {
    const q = query.trim();
    const ticket = ++latest.current;
    if (!q) {
      setHits([]);
      setCursor(null);
      setSearching(false);
      setError(null);
      return;
    }
    const controller = new AbortController();
    setSearching(true);
    const timer = setTimeout(() => {
      searchAll(q, controller.signal).then(
        (page) => {
          if (ticket !== latest.current) return;
          setHits(page.items);
          setCursor(page.next_cursor);
          setError(null);
          setSearching(false);
        },
        (err: Error) => {
          if (ticket !== latest.current || controller.signal.aborted) return;
          setError(err.message);
          setSearching(false);
        },
      );
    }, DEBOUNCE_MS);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [query]);

  async function more() {
    if (!cursor) return;
    const ticket = latest.current;
    try {
      const page = await searchAll(query.trim(), new AbortController().signal, cursor);
      if (ticket !== latest.current) return; // the query changed meanwhile
      setHits((shown) => [...shown, ...page.items]);
      setCursor(page.next_cursor);
    } catch (err) {
      setError((err as Error).message);
    }
  }

  function choose(hit: SearchHit) {
    onOpenChange(false);
    void openAt(hit.thread_id, hit.kind === "message" ? (hit.message_id ?? null) : null);
  }

  const groups = groupByThread(hits);
  return (
    <Command.Dialog open={open} onOpenChange={onOpenChange} label="Search chats" shouldFilter={false} loop
                    overlayClassName="palette-overlay" contentClassName="palette">
      <Command.Input value={query} onValueChange={setQuery} placeholder="Search messages, chats and files…" />
      <Command.List className="palette-list">
        {searching && hits.length === 0 && <Command.Loading>Searching…</Command.Loading>}
        {error && <div className="form-error" role="alert">{error}</div>}
        {!searching && !error && query.trim() && <Command.Empty>Nothing found for “{query.trim()}”.</Command.Empty>}
        {!query.trim() && <p className="muted palette-hint">Type to search. Words must all match; "quoted phrases" and prefix* work.</p>}
        {groups.map((group) => (
          <Command.Group key={group.threadId} heading={group.title}>
            {group.hits.map((hit, i) => (
              <Command.Item key={`${hit.kind}-${hit.message_id ?? hit.attachment_id ?? i}`}
                            value={`${group.threadId}-${hit.kind}-${hit.message_id ?? hit.attachment_id ?? i}`}
                            onSelect={() => choose(hit)} data-message-id={hit.message_id ?? undefined}>
                <span className="hit-kind">{kindLabel(hit)}</span>
                <span className="hit-text">
                  {hit.filename && <span className="hit-file">{hit.filename}</span>}
                  <Snippet html={hit.snippet} />
                </span>
                <time className="muted" dateTime={hit.created_at}>{new Date(hit.created_at).toLocaleDateString()}</time>
              </Command.Item>
            ))}
          </Command.Group>
        ))}
        {cursor && (
          <Command.Item value="more" onSelect={() => void more()} className="palette-more">
            More results…
          </Command.Item>
        )}
      </Command.List>
      <div className="palette-foot muted">↑↓ to move · Enter to open · Esc to close</div>
    </Command.Dialog>
  );
}
