// The typed API client: types come from the generated schema.d.ts (npm run gen:api), calls go through
// openapi-fetch with two cross-cutting rules: unsafe requests carry the CSRF token, and a lost session
// is reported once to whoever shows the login form.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

type Schemas = components["schemas"];
export type User = Schemas["UserPublic"];
export type Model = Schemas["ModelPublic"];
export type Thread = Schemas["ThreadPublic"];
export type Message = Schemas["MessagePublic"];
export type MessageCreate = Schemas["MessageCreate"];
export type ThreadWithMessages = Schemas["ThreadWithMessages"];
export type RegenerateIn = Schemas["RegenerateIn"];
export type EditIn = Schemas["EditIn"];
export type Diff = Schemas["DiffPublic"];
export type SearchHit = Schemas["SearchHit"];
export type Attachment = Schemas["AttachmentPublic"];
export type Budget = Schemas["BudgetPublic"];

const AUTH_LOST_CODES = new Set(["session_expired", "not_authenticated"]);
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }

  get authLost(): boolean {
    return this.status === 401 && AUTH_LOST_CODES.has(this.code);
  }
}

function readCookie(name: string): string {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function withCsrf(method: string, headers: Headers): Headers {
  if (!SAFE.has(method.toUpperCase())) headers.set("X-CSRF-Token", readCookie("convo_csrf"));
  return headers;
}

type AuthLostListener = (code: string) => void;
let authLostListener: AuthLostListener = () => {};
export function onAuthLost(listener: AuthLostListener): void {
  authLostListener = listener;
}

/** Turns a non-2xx response into an ApiError with the server's readable message. `parsed` is the body
 * when someone (openapi-fetch) has read it already: a read body cannot be cloned and read again. */
export async function errorOf(response: Response, parsed?: unknown): Promise<ApiError> {
  let body: unknown = parsed ?? null;
  if (parsed === undefined) {
    try {
      body = await response.clone().json();
    } catch {
      // Not JSON (a proxy's error page): fall back to the status line.
    }
  }
  const error = (body as { error?: Record<string, unknown> } | null)?.error;
  const { code, message, ...extra } = error ?? {};
  const err = new ApiError(
    response.status,
    typeof code === "string" ? code : `http_${response.status}`,
    typeof message === "string" ? message : `The server answered ${response.status} ${response.statusText}.`,
    extra,
  );
  if (err.authLost) authLostListener(err.code);
  return err;
}

const csrf: Middleware = {
  onRequest({ request }) {
    withCsrf(request.method, request.headers);
    return request;
  },
};

export const client = createClient<paths>({
  baseUrl: typeof location === "undefined" ? "http://localhost" : location.origin,
  credentials: "same-origin",
});
client.use(csrf);

/** Await an openapi-fetch call; its data, or an ApiError. */
export async function call<T>(pending: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await pending;
  if (!response.ok) throw await errorOf(response, error);
  return data as T;
}

/** fetch for the SSE endpoints (openapi-fetch would try to parse their bodies). */
export async function fetchStream(path: string, init: RequestInit & { method: string }): Promise<Response> {
  const headers = withCsrf(init.method, new Headers(init.headers));
  headers.set("Accept", "text/event-stream");
  if (init.body) headers.set("Content-Type", "application/json");
  const response = await fetch(path, { ...init, headers, credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw await errorOf(response);
  if (!response.body) throw new ApiError(response.status, "no_stream", "The server sent no stream.");
  return response;
}
