// Read-only look-ups for the version screens: the versions of one turn and the diff of two of them.
import { call, client, type Diff, type Message } from "../api/client";

export async function fetchVersions(messageId: number): Promise<Message[]> {
  const { items } = await call(
    client.GET("/api/convo/messages/{message_id}/versions", { params: { path: { message_id: messageId } } }),
  );
  return items;
}

export async function fetchDiff(fromId: number, toId: number, signal?: AbortSignal): Promise<Diff> {
  return call(
    client.GET("/api/convo/messages/{message_id}/diff", {
      params: { path: { message_id: fromId }, query: { against: toId } },
      signal,
    }),
  );
}
