// Two kinds of address: "/" is a new chat, "/t/<id>" a thread. The server answers index.html for both.
export function threadFromPath(path = location.pathname): number | null {
  const match = /^\/t\/(\d+)\/?$/.exec(path);
  return match ? Number(match[1]) : null;
}

export function pathOf(threadId: number | null): string {
  return threadId == null ? "/" : `/t/${threadId}`;
}

export function go(threadId: number | null, replace = false): void {
  const path = pathOf(threadId);
  if (location.pathname === path) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
}
