// A text/event-stream parser for fetch bodies. POST endpoints answer with SSE, which EventSource
// cannot send, so we read the body ourselves and parse it the way the HTML spec tells browsers to.

export interface SseEvent {
  id: string | null; // the last id seen on this stream, as EventSource's lastEventId
  event: string;
  data: string;
}

export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private sawCR = false;
  lastEventId: string | null = null;
  comments = 0;

  /** Feed decoded text; returns the events completed by it. */
  feed(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === "\n" && this.sawCR) {
        // The \n of a \r\n pair: the line already ended at \r.
        this.sawCR = false;
        start = i + 1;
        continue;
      }
      this.sawCR = ch === "\r";
      if (ch === "\n" || ch === "\r") {
        const line = this.buffer + text.slice(start, i);
        this.buffer = "";
        start = i + 1;
        const event = this.line(line);
        if (event) events.push(event);
      }
    }
    this.buffer += text.slice(start);
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const event = { id: this.lastEventId, event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      return event;
    }
    if (line.startsWith(":")) {
      this.comments++;
      return null;
    }
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.lastEventId = value;
    return null;
  }
}

/** Yields the events of a response body as they arrive; ends when the body does. */
export async function* readSse(body: ReadableStream<Uint8Array>, parser = new SseParser()): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
    yield* parser.feed(decoder.decode());
  } finally {
    reader.releaseLock();
  }
}
