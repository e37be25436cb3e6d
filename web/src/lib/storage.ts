// localStorage that never throws (private mode, full quota): losing a draft beats losing the page.
export function load(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function save(key: string, value: string | null): void {
  try {
    if (value === null || value === "") localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Nowhere to keep it; the text stays in the composer for this page's life.
  }
}

export const draftKey = (threadId: number | null) => `convo.draft.${threadId ?? "new"}`;
