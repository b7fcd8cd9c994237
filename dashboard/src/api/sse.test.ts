import { describe, expect, it } from "vitest";
import { SseParser, type SseEvent, readEvents } from "./sse";

const enc = new TextEncoder();

/** All the events of `bytes` fed to one parser in pieces ending at `cuts`. */
function parseInPieces(bytes: Uint8Array, cuts: number[]): SseEvent[] {
  const p = new SseParser();
  const out: SseEvent[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(...p.push(bytes.slice(at, cut)));
    at = cut;
  }
  return out;
}

// What gateway/streaming.py sends: a snapshot, then the in-band error that ends a failed call.
const GATEWAY =
  'data: {"pending":"12","types":[{"type":"e-mail ✉"}]}\n\n' +
  'data: {"pending":"13"}\n\n' +
  'event: error\ndata: {"code":14,"message":"broker unavailable: connection refused","details":[]}\n\n';

const EXPECTED: SseEvent[] = [
  { type: "message", data: '{"pending":"12","types":[{"type":"e-mail ✉"}]}', lastEventId: "" },
  { type: "message", data: '{"pending":"13"}', lastEventId: "" },
  { type: "error", data: '{"code":14,"message":"broker unavailable: connection refused","details":[]}', lastEventId: "" },
];

describe("SseParser", () => {
  it("parses the gateway's frames", () => {
    expect(new SseParser().push(enc.encode(GATEWAY))).toEqual(EXPECTED);
  });

  it("gives the same events however the bytes are split (every single cut, and two cuts)", () => {
    const bytes = enc.encode(GATEWAY);
    for (let i = 0; i <= bytes.length; i++) {
      expect(parseInPieces(bytes, [i])).toEqual(EXPECTED);
    }
    for (let i = 0; i <= bytes.length; i += 3) {
      for (let j = i; j <= bytes.length; j += 5) expect(parseInPieces(bytes, [i, j])).toEqual(EXPECTED);
    }
    // One byte at a time.
    expect(parseInPieces(bytes, Array.from({ length: bytes.length }, (_, k) => k))).toEqual(EXPECTED);
  });

  it("accepts CRLF and lone CR line ends, also when a CRLF is split between chunks", () => {
    for (const eol of ["\r\n", "\r"]) {
      const bytes = enc.encode(GATEWAY.replaceAll("\n", eol));
      for (let i = 0; i <= bytes.length; i++) expect(parseInPieces(bytes, [i])).toEqual(EXPECTED);
    }
  });

  it("joins data lines, keeps ids, drops comments, data-less events and an unfinished last event", () => {
    const p = new SseParser();
    const events = p.push(
      ": a comment\n" +
        "event: ping\n\n" + // no data: not dispatched, and its name does not carry over
        "id: 7\ndata: line one\ndata:line two\ndata\n\n" +
        "retry: 2500\nunknown: field\ndata:  two spaces\n\n" +
        "data: cut off",
    );
    expect(events).toEqual([
      { type: "message", data: "line one\nline two\n", lastEventId: "7" },
      { type: "message", data: " two spaces", lastEventId: "7" },
    ]);
    expect(p.retryMs).toBe(2500);
  });

  it("skips a byte-order mark at the start", () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode("data: x\n\n")]);
    expect(parseInPieces(bytes, [1, 2])).toEqual([{ type: "message", data: "x", lastEventId: "" }]);
  });
});

describe("readEvents", () => {
  function bodyOf(chunks: string[]): ReadableStream<Uint8Array> {
    return new ReadableStream({
      start(c) {
        for (const ch of chunks) c.enqueue(enc.encode(ch));
        c.close();
      },
    });
  }

  it("reads a body to its end", async () => {
    const seen: SseEvent[] = [];
    await readEvents(bodyOf(["da", "ta: 1\n", "\ndata: 2\n\n"]), (ev) => {
      seen.push(ev);
    });
    expect(seen.map((e) => e.data)).toEqual(["1", "2"]);
  });

  it("stops when the handler says so", async () => {
    const seen: string[] = [];
    await readEvents(bodyOf(["data: 1\n\ndata: 2\n\n"]), (ev) => {
      seen.push(ev.data);
      return false;
    });
    expect(seen).toEqual(["1"]);
  });

  it("rejects when the body fails", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(enc.encode("data: 1\n\n"));
        c.error(new TypeError("network error"));
      },
    });
    await expect(readEvents(body, () => {})).rejects.toThrow("network error");
  });
});
