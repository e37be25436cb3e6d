import { describe, expect, it } from "vitest";
import type { Message } from "../api/client";
import { placeInBranch } from "./chat";

function message(id: number, parent_id: number | null, role: Message["role"] = "user"): Message {
  return {
    id, parent_id, role, thread_id: 1, content: `m${id}`, status: "complete", model: null, temperature: null,
    created_at: "2026-01-01T00:00:00Z", meta: {}, version_index: 1, version_count: 1, sibling_ids: [id],
  };
}

describe("placeInBranch", () => {
  const branch = [message(1, null), message(2, 1, "assistant"), message(3, 2), message(4, 3, "assistant")];

  it("appends a new turn under the leaf", () => {
    expect(placeInBranch(branch, message(5, 4)).map((m) => m.id)).toEqual([1, 2, 3, 4, 5]);
  });

  it("replaces a known message in place", () => {
    const updated = { ...message(4, 3, "assistant"), content: "final" };
    const next = placeInBranch(branch, updated);
    expect(next.map((m) => m.content)).toEqual(["m1", "m2", "m3", "final"]);
  });

  it("switches to a new version: a sibling drops what followed the old one", () => {
    expect(placeInBranch(branch, message(9, 3, "assistant")).map((m) => m.id)).toEqual([1, 2, 3, 9]);
    expect(placeInBranch(branch, message(8, 2)).map((m) => m.id)).toEqual([1, 2, 8]);
    expect(placeInBranch(branch, message(7, null)).map((m) => m.id)).toEqual([7]);
  });
});
