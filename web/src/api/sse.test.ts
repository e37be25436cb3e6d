import { describe, expect, it } from "vitest";
import { SseParser, readSse } from "./sse";

describe("SseParser", () => {
  it("parses events with ids, names and JSON data, skipping ping comments", () => {
    const p = new SseParser();
    const events = p.feed(
      'id: 1\nevent: start\ndata: {"a":1}\n\n: ping\n\nid: 2\nevent: delta\ndata: {"text":"hi"}\n\n',
    );
    expect(events).toEqual([
      { id: "1", event: "start", data: '{"a":1}' },
      { id: "2", event: "delta", data: '{"text":"hi"}' },
    ]);
    expect(p.comments).toBe(1);
    expect(p.lastEventId).toBe("2");
  });

  it("reassembles events split at any byte, with CRLF and CR line ends", () => {
    const text = 'id: 7\r\nevent: delta\r\ndata: {"text":"a b"}\r\n\r\nid: 8\revent: done\rdata: x\r\r';
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SseParser();
      const events = [...p.feed(text.slice(0, cut)), ...p.feed(text.slice(cut))];
      expect(events.map((e) => [e.id, e.event, e.data])).toEqual([
        ["7", "delta", '{"text":"a b"}'],
        ["8", "done", "x"],
      ]);
    }
  });

  it("joins multi-line data, defaults the event name, and keeps the last id", () => {
    const p = new SseParser();
    expect(p.feed("data: one\ndata:two\n\nid: 3\n\ndata\n\n")).toEqual([
      { id: null, event: "message", data: "one\ntwo" },
      { id: "3", event: "message", data: "" },
    ]);
  });

  it("does not dispatch an event without data", () => {
    expect(new SseParser().feed("event: delta\nid: 4\n\n")).toEqual([]);
  });
});

describe("readSse", () => {
  it("decodes UTF-8 split across chunks", async () => {
    const bytes = new TextEncoder().encode('id: 1\nevent: delta\ndata: {"text":"héllo 🌍"}\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const b of bytes) controller.enqueue(new Uint8Array([b]));
        controller.close();
      },
    });
    const events = [];
    for await (const e of readSse(body)) events.push(e);
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0].data).text).toBe("héllo 🌍");
  });
});
