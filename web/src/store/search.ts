// Search over everything the user has said, and the one rule for showing its snippets safely.
import { call, client, type SearchHit } from "../api/client";

export interface SearchPage {
  items: SearchHit[];
  next_cursor: string | null;
}

export async function searchAll(q: string, signal: AbortSignal, cursor: string | null = null): Promise<SearchPage> {
  return call(client.POST("/api/convo/search", { body: { q, limit: 30, cursor }, signal }));
}

export interface SnippetPart {
  text: string;
  mark: boolean;
}

const MARK = /<mark>([\s\S]*?)<\/mark>/g;

const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

/** Decodes HTML character references; no DOM involved, so nothing is ever parsed as markup. */
function decode(html: string): string {
  return html.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, ref: string) => {
    if (ref[0] !== "#") return NAMED[ref.toLowerCase()] ?? whole;
    const code = ref[1] === "x" || ref[1] === "X" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}

/**
 * A snippet as text runs, marked or not. It is never set as HTML: only <mark> pairs become marks, and
 * everything else (entities included) is decoded to plain text that React renders as text.
 */
export function snippetParts(snippet: string): SnippetPart[] {
  const parts: SnippetPart[] = [];
  let last = 0;
  for (const match of snippet.matchAll(MARK)) {
    if (match.index > last) parts.push({ text: decode(snippet.slice(last, match.index)), mark: false });
    parts.push({ text: decode(match[1].replace(/<\/?mark>/g, "")), mark: true });
    last = match.index + match[0].length;
  }
  if (last < snippet.length) parts.push({ text: decode(snippet.slice(last)), mark: false });
  return parts.filter((p) => p.text);
}

export interface ThreadHits {
  threadId: number;
  title: string;
  hits: SearchHit[];
}

/** Hits grouped by thread, threads in the order of their best hit. */
export function groupByThread(hits: SearchHit[]): ThreadHits[] {
  const groups = new Map<number, ThreadHits>();
  for (const hit of hits) {
    let group = groups.get(hit.thread_id);
    if (!group) {
      group = { threadId: hit.thread_id, title: hit.thread_title || "Untitled chat", hits: [] };
      groups.set(hit.thread_id, group);
    }
    group.hits.push(hit);
  }
  return [...groups.values()];
}
