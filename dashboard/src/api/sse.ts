// A Server-Sent Events reader over fetch, so a stream can carry an Authorization header (which
// EventSource cannot send).
//
// The parser follows the event-stream format of the HTML standard: lines end in CRLF, LF or CR;
// `field: value` (one space after the colon dropped), `:` starts a comment; `data` lines are
// joined with "\n"; a blank line dispatches the event (an event without data is dropped);
// `event` names it ("message" by default). The gateway sends `data: <json>\n\n` per message and
// `event: error\ndata: {code, message, details}\n\n` when the call fails (gateway/streaming.py).
// Input may arrive split anywhere: inside a line, between CR and LF, inside a UTF-8 character.

export interface SseEvent {
  /** The event's name: "message" unless an `event:` line said otherwise. */
  type: string;
  data: string;
  /** The last event id seen on the stream ("" when none). */
  lastEventId: string;
}

export class SseParser {
  private readonly decoder = new TextDecoder("utf-8");
  private line = "";
  private skipLF = false;
  private eventType = "";
  private data = "";
  private hasData = false;
  private lastEventId = "";
  /** The reconnection time the server asked for with `retry:`, if any (ms). */
  retryMs: number | null = null;

  /** Feed bytes (or already decoded text); returns the events completed by them. */
  push(chunk: Uint8Array | string): SseEvent[] {
    const text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    const out: SseEvent[] = [];
    let start = 0;
    let i = 0;
    if (this.skipLF) {
      this.skipLF = false;
      if (text.length > 0 && text.charCodeAt(0) === 10) start = i = 1;
      else if (text.length === 0) this.skipLF = true;
    }
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.line + text.slice(start, i);
      this.line = "";
      this.processLine(line, out);
      if (c === 13) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 10) i++;
        } else {
          this.skipLF = true; // the LF of a CRLF may come with the next chunk
        }
      }
      start = i + 1;
    }
    this.line += text.slice(start);
    return out;
  }

  private processLine(line: string, out: SseEvent[]): void {
    if (line === "") {
      if (this.hasData) {
        out.push({ type: this.eventType || "message", data: this.data.endsWith("\n") ? this.data.slice(0, -1) : this.data, lastEventId: this.lastEventId });
      }
      this.eventType = "";
      this.data = "";
      this.hasData = false;
      return;
    }
    if (line.startsWith(":")) return; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.data += `${value}\n`;
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }
}

/**
 * Reads the events of `body` until it ends (resolves) or fails (rejects), calling `onEvent` for
 * each. Stops early, without calling `onEvent` again, once `onEvent` returns false.
 */
export async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (ev: SseEvent) => boolean | void): Promise<void> {
  const reader = body.getReader();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const ev of parser.push(value)) {
        if (onEvent(ev) === false) return;
      }
    }
  } finally {
    // Done with it either way: let the connection go (ignored when it is already closed).
    reader.cancel().catch(() => {});
  }
}
