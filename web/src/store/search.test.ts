import { describe, expect, it } from "vitest";
import type { SearchHit } from "../api/client";
import { groupByThread, snippetParts } from "./search";

describe("snippetParts", () => {
  it("turns <mark> pairs into marks and decodes the escaped rest as text", () => {
    expect(snippetParts("a &lt;b&gt; &#x27;q&#39; <mark>fox</mark> &amp; <mark>dog</mark>s")).toEqual([
      { text: "a <b> 'q' ", mark: false },
      { text: "fox", mark: true },
      { text: " & ", mark: false },
      { text: "dog", mark: true },
      { text: "s", mark: false },
    ]);
  });

  it("never lets other markup through as markup", () => {
    const parts = snippetParts('<img src=x onerror="alert(1)"><mark><b>x</b></mark><script>y</script>');
    // Whatever arrives unescaped stays text for React to render as text: no element is ever created.
    expect(parts.every((p) => typeof p.text === "string")).toBe(true);
    expect(parts.find((p) => p.mark)?.text).toBe("<b>x</b>");
    expect(parts[0]).toEqual({ text: '<img src=x onerror="alert(1)">', mark: false });
    expect(parts.map((p) => p.text).join("")).not.toContain("<mark>");
  });
});

describe("groupByThread", () => {
  it("keeps threads in the order of their best hit", () => {
    const hit = (thread_id: number, message_id: number) =>
      ({ kind: "message", thread_id, thread_title: `t${thread_id}`, message_id, snippet: "", score: 1,
         created_at: "" }) as SearchHit;
    const groups = groupByThread([hit(2, 1), hit(1, 2), hit(2, 3)]);
    expect(groups.map((g) => [g.threadId, g.hits.map((h) => h.message_id)])).toEqual([[2, [1, 3]], [1, [2]]]);
  });
});
