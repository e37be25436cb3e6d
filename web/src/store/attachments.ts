// The files of each thread: uploads with progress, indexing status until ready or failed, deletion.
import { create } from "zustand";
import { call, client, errorOf, withCsrf, type Attachment } from "../api/client";

export interface Upload {
  key: number;
  threadId: number;
  filename: string;
  size: number;
  loaded: number;
  /** A readable reason the server (or the network) refused the file. */
  error: string | null;
}

interface FilesState {
  byThread: Record<number, Attachment[]>;
  uploads: Upload[];
  load(threadId: number): Promise<void>;
  upload(threadId: number, file: File): Promise<void>;
  remove(attachment: Attachment): Promise<void>;
  dismiss(key: number): void;
}

const POLL_MS = 400;
const settled = (a: Attachment) => a.status === "ready" || a.status === "failed";
const polling = new Set<number>();
let uploadKey = 0;

/** What a refusal means to the person who chose the file. */
function uploadError(status: number, message: string | null): string {
  if (message) return message;
  if (status === 413) return "The file is larger than the server accepts.";
  if (status === 415) return "Files of this type cannot be attached.";
  if (status === 0) return "The upload was cut off. Check the connection and try again.";
  return `The upload failed (${status}).`;
}

/** POSTs a file with XMLHttpRequest: fetch cannot report upload progress. */
function send(threadId: number, file: File, onProgress: (loaded: number) => void): Promise<Attachment> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/threads/${threadId}/attachments`);
    withCsrf("POST", new Headers()).forEach((value, name) => xhr.setRequestHeader(name, value));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onerror = () => reject(new Error(uploadError(0, null)));
    xhr.onload = async () => {
      if (xhr.status === 201) {
        resolve(JSON.parse(xhr.responseText) as Attachment);
        return;
      }
      const err = await errorOf(new Response(xhr.responseText || null, { status: xhr.status }));
      const fromServer = err.code.startsWith("http_") ? null : err.message;
      reject(new Error(uploadError(xhr.status, fromServer)));
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

export const useFiles = create<FilesState>()((set, get) => {
  function put(a: Attachment): void {
    set((s) => {
      const list = s.byThread[a.thread_id] ?? [];
      const next = list.some((o) => o.id === a.id) ? list.map((o) => (o.id === a.id ? a : o)) : [...list, a];
      return { byThread: { ...s.byThread, [a.thread_id]: next } };
    });
  }

  /** Follows a file's indexing until it is ready or failed. */
  async function watch(a: Attachment): Promise<void> {
    if (settled(a) || polling.has(a.id)) return;
    polling.add(a.id);
    try {
      for (;;) {
        await new Promise((r) => setTimeout(r, POLL_MS));
        if (!get().byThread[a.thread_id]?.some((o) => o.id === a.id)) return; // deleted meanwhile
        try {
          const fresh = await call(
            client.GET("/api/attachments/{attachment_id}", { params: { path: { attachment_id: a.id } } }),
          );
          put(fresh);
          if (settled(fresh)) return;
        } catch (err) {
          if ((err as { status?: number }).status === 404) return;
          // A passing network problem: keep asking.
        }
      }
    } finally {
      polling.delete(a.id);
    }
  }

  return {
    byThread: {},
    uploads: [],

    async load(threadId) {
      try {
        const { items } = await call(
          client.GET("/api/threads/{thread_id}/attachments", { params: { path: { thread_id: threadId } } }),
        );
        // An upload that finished while this list was on its way is kept.
        set((s) => {
          const known = new Set(items.map((a) => a.id));
          const newer = (s.byThread[threadId] ?? []).filter((a) => !known.has(a.id) && a.id > Math.max(0, ...known));
          return { byThread: { ...s.byThread, [threadId]: [...items, ...newer] } };
        });
        items.forEach((a) => void watch(a));
      } catch {
        // The chat itself reports a missing thread or a lost session.
      }
    },

    async upload(threadId, file) {
      const key = ++uploadKey;
      set((s) => ({ uploads: [...s.uploads, { key, threadId, filename: file.name, size: file.size, loaded: 0, error: null }] }));
      const patch = (change: Partial<Upload>) =>
        set((s) => ({ uploads: s.uploads.map((u) => (u.key === key ? { ...u, ...change } : u)) }));
      try {
        const attachment = await send(threadId, file, (loaded) => patch({ loaded }));
        set((s) => ({ uploads: s.uploads.filter((u) => u.key !== key) }));
        put(attachment);
        void watch(attachment);
      } catch (err) {
        patch({ error: (err as Error).message });
      }
    },

    async remove(attachment) {
      try {
        await call(
          client.DELETE("/api/attachments/{attachment_id}", { params: { path: { attachment_id: attachment.id } } }),
        );
      } catch (err) {
        if ((err as { status?: number }).status !== 404) throw err;
      }
      set((s) => ({
        byThread: {
          ...s.byThread,
          [attachment.thread_id]: (s.byThread[attachment.thread_id] ?? []).filter((a) => a.id !== attachment.id),
        },
      }));
    },

    dismiss(key) {
      set((s) => ({ uploads: s.uploads.filter((u) => u.key !== key) }));
    },
  };
});

export const contentUrl = (attachmentId: number) => `/api/attachments/${attachmentId}/content`;
