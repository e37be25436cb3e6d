// The app's state and everything that changes it: auth, threads, the active branch and live answers.
// Components read slices with useChat(selector) and call actions; no component talks HTTP itself.
import { create } from "zustand";
import {
  ApiError,
  call,
  client,
  fetchStream,
  onAuthLost,
  type Message,
  type EditIn,
  type MessageCreate,
  type Model,
  type RegenerateIn,
  type Thread,
  type ThreadWithMessages,
  type User,
} from "../api/client";
import { readSse } from "../api/sse";
import { go, threadFromPath } from "../lib/route";

/** What one message may set for itself, overriding its thread. */
export type Overrides = Pick<MessageCreate, "model" | "temperature">;

export interface ThreadSettings {
  model: string | null;
  temperature: number | null;
}

interface ChatState {
  user: User | null;
  booted: boolean;
  /** Set when the session ran out: the login form shows over the page, nothing else is lost. */
  authLost: string | null;
  models: Model[];
  threads: Thread[];
  threadsCursor: string | null;
  activeId: number | null;
  thread: Thread | null;
  messages: Message[];
  loadingThread: boolean;
  /** A readable problem with the last action (send, rename...), shown near the composer. */
  notice: string | null;
  /** Settings chosen before the first message of a new chat creates its thread. */
  pending: ThreadSettings;
  /** A message to scroll to and mark (opened from search). */
  highlightId: number | null;

  boot(): Promise<void>;
  authenticate(mode: "login" | "signup", email: string, password: string, name?: string): Promise<void>;
  /** Ends this session, or with `everywhere` every session of the user (other devices too). */
  logout(everywhere?: boolean): Promise<void>;
  loadThreads(more?: boolean): Promise<void>;
  openThread(id: number | null): Promise<void>;
  renameThread(id: number, title: string): Promise<void>;
  deleteThread(id: number): Promise<void>;
  updateSettings(settings: Partial<ThreadSettings>): Promise<void>;
  send(content: string, overrides?: Overrides): Promise<boolean>;
  stop(messageId: number): Promise<void>;
  retry(messageId: number): Promise<void>;
  /** A new version of an answer, optionally from another model. */
  regenerate(messageId: number, overrides?: Overrides): Promise<void>;
  /** A new version of a message: a user message gets a fresh answer; an answer is a hand correction. */
  edit(messageId: number, content: string): Promise<boolean>;
  /** Shows another version of a turn (and the newest path under it). */
  switchVersion(messageId: number): Promise<void>;
  /** A new chat holding the conversation up to this message. */
  branch(messageId: number): Promise<void>;
  /** Opens a thread on the branch through a message, scrolled to it and marked. */
  openAt(threadId: number, messageId: number | null): Promise<void>;
  /** The active chat's id, creating its thread first when it is new (uploads need one). */
  ensureThread(): Promise<number>;
  clearHighlight(): void;
  dismissNotice(): void;
}

const controllers = new Map<number | string, AbortController>();
let pendingKey = 0;

function abortAll(except?: number): void {
  for (const [key, controller] of controllers) {
    const threadId = (controller as AbortController & { threadId?: number }).threadId;
    if (except !== undefined && threadId === except) continue;
    controller.abort();
    controllers.delete(key);
  }
}

const FLUSH_MS = 40;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A message put into the active branch: after its parent, replacing whatever followed it there. */
export function placeInBranch(messages: Message[], message: Message): Message[] {
  const at = messages.findIndex((m) => m.id === message.id);
  if (at !== -1) return messages.map((m, i) => (i === at ? message : m));
  const parentAt = message.parent_id == null ? -1 : messages.findIndex((m) => m.id === message.parent_id);
  if (parentAt === -1 && message.parent_id != null) return [...messages, message];
  return [...messages.slice(0, parentAt + 1), message];
}

export const useChat = create<ChatState>()((set, get) => {
  function patchMessage(threadId: number, id: number, change: (m: Message) => Message): void {
    if (get().activeId !== threadId) return;
    set((s) => ({ messages: s.messages.map((m) => (m.id === id ? change(m) : m)) }));
  }

  /**
   * Follows one answer to its end: reads `initial` (the POST's stream) or opens the message's stream
   * after the last event seen, and reconnects with Last-Event-ID whenever the connection drops.
   */
  async function track(threadId: number, initial: Response | null, messageId: number | null, after = 0) {
    const controller = new AbortController() as AbortController & { threadId?: number };
    controller.threadId = threadId;
    let key: number | string = messageId ?? `pending-${++pendingKey}`;
    controllers.get(key)?.abort();
    controllers.set(key, controller);
    let response = initial;
    let lastId = after;
    let attempt = 0;
    // Deltas are joined and shown at most every FLUSH_MS: re-rendering the Markdown per token would cost
    // O(n²) on a long answer or on a replay that delivers thousands of deltas at once.
    let buffered = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      clearTimeout(timer);
      timer = undefined;
      if (!buffered || messageId == null) return;
      const text = buffered;
      buffered = "";
      patchMessage(threadId, messageId, (m) => ({ ...m, content: m.content + text }));
    };
    try {
      while (!controller.signal.aborted) {
        try {
          if (!response) {
            response = await fetchStream(`/api/convo/messages/${messageId}/stream`, {
              method: "GET",
              headers: { "Last-Event-ID": String(lastId) },
              signal: controller.signal,
            });
          }
          let events = 0;
          for await (const event of readSse(response.body!)) {
            if (controller.signal.aborted) return;
            events++;
            attempt = 0;
            if (event.id) lastId = Number(event.id);
            const data = JSON.parse(event.data);
            if (event.event === "delta") {
              buffered += String(data.text ?? "");
              timer ??= setTimeout(flush, FLUSH_MS);
              continue;
            }
            flush();
            if (event.event === "start") {
              messageId = (data.assistant_message as Message).id;
              if (key !== messageId) {
                controllers.delete(key);
                key = messageId;
                controllers.set(key, controller);
              }
              onStart(threadId, data.user_message as Message | null, data.assistant_message as Message);
            } else if (messageId == null) {
              continue;
            } else if (event.event === "usage" || event.event === "citations") {
              const meta = event.event === "usage" ? data : { citations: data.items };
              patchMessage(threadId, messageId, (m) => ({ ...m, meta: { ...m.meta, ...meta } }));
            } else if (event.event === "done") {
              // The final message holds the whole text: a replay of a finished answer may send only this.
              patchMessage(threadId, messageId, () => data.message as Message);
              void get().loadThreads();
              return;
            } else if (event.event === "error") {
              patchMessage(threadId, messageId, (m) => ({ ...m, status: "error", meta: { ...m.meta, error: data } }));
              void get().loadThreads();
              return;
            }
          }
          // A resumed stream that ends with nothing: the server saved less than this page saw (it died
          // between checkpoints). Replay from the start; the `start` event resets the text to what it has.
          if (events === 0 && response !== initial) lastId = 0;
        } catch (err) {
          if (controller.signal.aborted) return;
          if (err instanceof ApiError && err.status < 500) {
            // Lost session: the login form shows, and logging in again re-opens the thread and resumes.
            if (!err.authLost && messageId != null) {
              const error = { code: err.code, message: err.message };
              patchMessage(threadId, messageId, (m) => ({ ...m, status: "error", meta: { ...m.meta, error } }));
            }
            return;
          }
          // A dropped connection or a restarting server: try again below.
        }
        flush();
        response = null;
        if (messageId == null) {
          // Cut before `start`: the answer runs on regardless, and re-opening the thread finds and follows it.
          if (get().activeId === threadId) void get().openThread(threadId);
          return;
        }
        await sleep(Math.min(250 * 2 ** attempt, 2000));
        attempt++;
      }
    } finally {
      if (controller.signal.aborted) clearTimeout(timer);
      else flush();
      if (controllers.get(key) === controller) controllers.delete(key);
    }
  }

  function onStart(threadId: number, question: Message | null, answer: Message): void {
    if (get().activeId !== threadId) return;
    set((s) => {
      let messages = s.messages;
      if (question) messages = placeInBranch(messages, question);
      // A replay from the first event starts the text over, so nothing is doubled.
      messages = placeInBranch(messages, { ...answer, content: "" });
      return { messages };
    });
    void get().loadThreads();
  }

  /** Puts a thread and its active branch on screen, following any answer still being written. */
  function show(full: ThreadWithMessages): void {
    const { messages: saved, ...thread } = full;
    // An answer this page already follows keeps the text shown so far (the saved copy lags behind
    // it); any other answer still being written (another tab, or before a reload) is followed from
    // its first event.
    const shown = get().messages;
    const messages = saved.map((m) => (controllers.has(m.id) && shown.find((s) => s.id === m.id)) || m);
    set({ thread, messages, loadingThread: false });
    for (const m of messages) {
      if (m.role === "assistant" && m.status === "streaming" && !controllers.has(m.id)) void track(thread.id, null, m.id, 0);
    }
  }

  function failed(err: unknown): void {
    if (err instanceof ApiError && err.authLost) return;
    const message = err instanceof Error ? err.message : String(err);
    set({ notice: err instanceof TypeError ? "Cannot reach the server. Check the connection and try again." : message });
  }

  function reset(): void {
    abortAll();
    set({ threads: [], threadsCursor: null, activeId: null, thread: null, messages: [], notice: null });
  }

  onAuthLost((code) => {
    if (get().user) set({ authLost: code });
  });

  return {
    user: null,
    booted: false,
    authLost: null,
    models: [],
    threads: [],
    threadsCursor: null,
    activeId: null,
    thread: null,
    messages: [],
    loadingThread: false,
    notice: null,
    pending: { model: null, temperature: null },
    highlightId: null,

    async boot() {
      const { data, response } = await client.GET("/api/auth/me");
      if (!response.ok || !data) {
        set({ booted: true, user: null });
        return;
      }
      set({ user: data, booted: true });
      const path = threadFromPath();
      await Promise.all([loadModels(), get().loadThreads(), path != null ? get().openThread(path) : null]);
    },

    async authenticate(mode, email, password, name) {
      const result =
        mode === "login"
          ? await call(client.POST("/api/auth/login", { body: { email, password } }))
          : await call(client.POST("/api/auth/signup", { body: { email, password, name: name ?? "" } }));
      const sameUser = get().user?.id === result.user.id;
      // The same person again: stay where they were, and pick up any answer that went on meanwhile.
      // Someone else: start clean, at the address they came to.
      const target = sameUser ? get().activeId : threadFromPath();
      if (!sameUser) reset();
      set({ user: result.user, authLost: null, booted: true });
      await Promise.all([loadModels(), get().loadThreads(), target != null ? get().openThread(target) : null]);
    },

    async logout(everywhere = false) {
      try {
        await call(client.POST(everywhere ? "/api/auth/logout-all" : "/api/auth/logout"));
      } catch {
        // Already logged out on the server: the page forgets the user all the same.
      }
      reset();
      set({ user: null, authLost: null });
      go(null, true);
    },

    async loadThreads(more = false) {
      const cursor = more ? get().threadsCursor : null;
      try {
        const page = await call(
          client.GET("/api/threads", { params: { query: { limit: 50, ...(cursor ? { cursor } : {}) } } }),
        );
        set((s) => ({
          threads: more ? [...s.threads, ...page.items.filter((t) => !s.threads.some((o) => o.id === t.id))] : page.items,
          threadsCursor: page.next_cursor ?? null,
          // The server names a thread after its first message: the header follows the list.
          thread: s.thread && { ...s.thread, title: page.items.find((t) => t.id === s.thread!.id)?.title ?? s.thread.title },
        }));
      } catch (err) {
        failed(err);
      }
    },

    async openThread(id) {
      abortAll(id ?? undefined);
      if (id == null) {
        set({ activeId: null, thread: null, messages: [], loadingThread: false, notice: null });
        go(null);
        return;
      }
      set({ activeId: id, loadingThread: true, notice: null, highlightId: null,
            ...(get().activeId !== id ? { messages: [], thread: null } : {}) });
      go(id);
      try {
        const full = await call(
          client.GET("/api/threads/{thread_id}", { params: { path: { thread_id: id } } }),
        );
        if (get().activeId !== id) return;
        show(full);
      } catch (err) {
        set({ loadingThread: false });
        if (err instanceof ApiError && err.status === 404) {
          set({ activeId: null, thread: null, messages: [], notice: "That chat does not exist (or is not yours)." });
          go(null, true);
        } else failed(err);
      }
    },

    async renameThread(id, title) {
      try {
        const updated = await call(
          client.PATCH("/api/threads/{thread_id}", { params: { path: { thread_id: id } }, body: { title } }),
        );
        const { messages: _ignored, ...thread } = updated;
        set((s) => ({
          threads: s.threads.map((t) => (t.id === id ? thread : t)),
          thread: s.activeId === id ? thread : s.thread,
        }));
      } catch (err) {
        failed(err);
      }
    },

    async deleteThread(id) {
      try {
        await call(client.DELETE("/api/threads/{thread_id}", { params: { path: { thread_id: id } } }));
        set((s) => ({ threads: s.threads.filter((t) => t.id !== id) }));
        if (get().activeId === id) await get().openThread(null);
      } catch (err) {
        failed(err);
      }
    },

    async updateSettings(settings) {
      const id = get().activeId;
      if (id == null) {
        set((s) => ({ pending: { ...s.pending, ...settings } }));
        return;
      }
      try {
        const updated = await call(
          client.PATCH("/api/threads/{thread_id}", { params: { path: { thread_id: id } }, body: settings }),
        );
        const { messages: _ignored, ...thread } = updated;
        if (get().activeId === id) set({ thread });
        set((s) => ({ threads: s.threads.map((t) => (t.id === id ? thread : t)) }));
      } catch (err) {
        failed(err);
      }
    },

    async send(content, overrides = {}) {
      set({ notice: null });
      try {
        const id = await get().ensureThread();
        const body: MessageCreate = { content, ...overrides };
        const response = await fetchStream(`/api/threads/${id}/messages`, { method: "POST", body: JSON.stringify(body) });
        void track(id, response, null);
        return true;
      } catch (err) {
        failed(err);
        return false;
      }
    },

    async stop(messageId) {
      try {
        await call(client.POST("/api/convo/messages/{message_id}/cancel", { params: { path: { message_id: messageId } } }));
      } catch (err) {
        failed(err);
      }
    },

    async retry(messageId) {
      await get().regenerate(messageId);
    },

    async regenerate(messageId, overrides = {}) {
      const threadId = get().activeId;
      if (threadId == null) return;
      set({ notice: null });
      try {
        const body: RegenerateIn = { ...overrides };
        const response = await fetchStream(`/api/convo/messages/${messageId}/regenerate`, {
          method: "POST",
          body: JSON.stringify(body),
        });
        void track(threadId, response, null);
      } catch (err) {
        failed(err);
      }
    },

    async edit(messageId, content) {
      const threadId = get().activeId;
      const message = get().messages.find((m) => m.id === messageId);
      if (threadId == null || !message) return false;
      set({ notice: null });
      try {
        if (message.role === "user") {
          const body: EditIn = { content, regenerate: true };
          const response = await fetchStream(`/api/convo/messages/${messageId}/edit`, {
            method: "POST",
            body: JSON.stringify(body),
          });
          void track(threadId, response, null);
        } else {
          const saved = await call(
            client.POST("/api/convo/messages/{message_id}/edit", {
              params: { path: { message_id: messageId } },
              body: { content, regenerate: false },
            }),
          ) as unknown as Message;
          if (get().activeId === threadId) set((s) => ({ messages: placeInBranch(s.messages, saved) }));
        }
        return true;
      } catch (err) {
        failed(err);
        return false;
      }
    },

    async switchVersion(messageId) {
      const threadId = get().activeId;
      if (threadId == null) return;
      try {
        const full = await call(
          client.POST("/api/threads/{thread_id}/switch", {
            params: { path: { thread_id: threadId } },
            body: { message_id: messageId },
          }),
        );
        if (get().activeId === threadId) show(full);
      } catch (err) {
        failed(err);
      }
    },

    async branch(messageId) {
      try {
        const full = await call(
          client.POST("/api/convo/messages/{message_id}/branch", { params: { path: { message_id: messageId } } }),
        );
        abortAll();
        set({ activeId: full.id, highlightId: null, notice: null, messages: [] });
        go(full.id);
        show(full);
        await get().loadThreads();
      } catch (err) {
        failed(err);
      }
    },

    async openAt(threadId, messageId) {
      if (messageId == null) {
        await get().openThread(threadId);
        return;
      }
      abortAll(threadId);
      set({ activeId: threadId, loadingThread: true, notice: null, highlightId: messageId,
            ...(get().activeId !== threadId ? { messages: [], thread: null } : {}) });
      go(threadId);
      try {
        // The message may be on a branch the thread does not show: make its branch the active one.
        const full = await call(
          client.POST("/api/threads/{thread_id}/switch", {
            params: { path: { thread_id: threadId } },
            body: { message_id: messageId },
          }),
        );
        if (get().activeId === threadId) show(full);
      } catch (err) {
        set({ loadingThread: false, highlightId: null });
        failed(err);
      }
    },

    async ensureThread() {
      const id = get().activeId;
      if (id != null) return id;
      const { model, temperature } = get().pending;
      const created = await call(client.POST("/api/threads", { body: { model, temperature } }));
      set((s) => ({ activeId: created.id, thread: created, messages: [], threads: [created, ...s.threads],
                    pending: { model: null, temperature: null } }));
      go(created.id);
      return created.id;
    },

    clearHighlight() {
      set({ highlightId: null });
    },

    dismissNotice() {
      set({ notice: null });
    },
  };

  async function loadModels(): Promise<void> {
    try {
      const { items } = await call(client.GET("/api/models"));
      set({ models: items });
    } catch (err) {
      failed(err);
    }
  }
});
