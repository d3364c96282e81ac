// The backend leg's WebSocket framing (RFC 6455 section 5).

import assert from "node:assert/strict";
import {
  closePayload,
  encodeFrame,
  FrameDecoder,
  OPCODE,
  truncateReason,
  WebSocketProtocolError,
  type WsEvent,
} from "../../lib/proxy/ws_frames.ts";
import { concatBytes } from "../../lib/bytes.ts";

const utf8 = new TextEncoder();
const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** A frame as a server sends it: unmasked. */
function serverFrame(opcode: number, payload: Uint8Array | string, fin = true): Uint8Array {
  const bytes = typeof payload === "string" ? utf8.encode(payload) : payload;
  return encodeFrame(opcode, bytes, { mask: null, fin });
}

const concat = (...parts: Uint8Array[]) => concatBytes(parts);

function decodeAll(bytes: Uint8Array, options?: { maxMessageBytes?: number }): WsEvent[] {
  return new FrameDecoder(options).push(bytes);
}

function assertProtocolError(f: () => unknown, code: number, message: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof WebSocketProtocolError, `a WebSocketProtocolError, got ${e}`);
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("encodeFrame() masks a client frame as RFC 6455 5.7 shows", () => {
  // RFC 6455 section 5.7: a masked "Hello" with the key 37 fa 21 3d.
  assert.deepEqual(
    [...encodeFrame(OPCODE.text, utf8.encode("Hello"), { mask: MASK })],
    [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
  );
});

Deno.test("encodeFrame() masks with a fresh random key by default", () => {
  const payload = new Uint8Array(64);
  const a = encodeFrame(OPCODE.binary, payload);
  const b = encodeFrame(OPCODE.binary, payload);
  assert.equal(a[1] & 0x80, 0x80, "mask bit set");
  assert.notDeepEqual(a.subarray(2, 6), b.subarray(2, 6), "two frames, two keys");
});

Deno.test("encodeFrame() uses 16-bit and 64-bit lengths past 125 and 65535 bytes", () => {
  const medium = encodeFrame(OPCODE.binary, new Uint8Array(300), { mask: null });
  assert.deepEqual([...medium.subarray(0, 4)], [0x82, 126, 0x01, 0x2c]);
  assert.equal(medium.length, 4 + 300);
  const large = encodeFrame(OPCODE.binary, new Uint8Array(70_000), { mask: MASK });
  assert.deepEqual(
    [...large.subarray(0, 10)],
    [0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70],
  );
  assert.deepEqual([...large.subarray(10, 14)], [...MASK]);
  assert.equal(large.length, 14 + 70_000);
});

Deno.test("FrameDecoder decodes text, binary, ping and pong frames", () => {
  const events = decodeAll(concat(
    serverFrame(OPCODE.text, "héllo"),
    serverFrame(OPCODE.binary, new Uint8Array([1, 2, 3])),
    serverFrame(OPCODE.ping, "p"),
    serverFrame(OPCODE.pong, ""),
  ));
  assert.deepEqual(events, [
    { type: "text", data: "héllo" },
    { type: "binary", data: new Uint8Array([1, 2, 3]) },
    { type: "ping", data: utf8.encode("p") },
    { type: "pong", data: new Uint8Array(0) },
  ]);
});

Deno.test("FrameDecoder reassembles a fragmented message around an interleaved ping", () => {
  const events = decodeAll(concat(
    serverFrame(OPCODE.text, "fra", false),
    serverFrame(OPCODE.ping, "in between"),
    serverFrame(OPCODE.continuation, "gmen", false),
    serverFrame(OPCODE.continuation, "ted"),
  ));
  assert.deepEqual(events, [
    { type: "ping", data: utf8.encode("in between") },
    { type: "text", data: "fragmented" },
  ]);
});

Deno.test("FrameDecoder waits for frames split across reads, byte by byte", () => {
  const payload = new Uint8Array(70_000).map((_, i) => (i * 31) & 0xff);
  const bytes = concat(serverFrame(OPCODE.binary, payload), serverFrame(OPCODE.text, "next"));
  const decoder = new FrameDecoder();
  const events: WsEvent[] = [];
  // Header bytes one at a time, then the rest in uneven chunks.
  for (let i = 0; i < 12; i++) events.push(...decoder.push(bytes.subarray(i, i + 1)));
  for (let i = 12; i < bytes.length; i += 4093) {
    events.push(...decoder.push(bytes.subarray(i, Math.min(i + 4093, bytes.length))));
  }
  assert.equal(events.length, 2);
  assert.deepEqual(events[0], { type: "binary", data: payload });
  assert.deepEqual(events[1], { type: "text", data: "next" });
});

Deno.test("FrameDecoder decodes a 1 MiB message with a 64-bit length", () => {
  const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
  const frame = serverFrame(OPCODE.binary, big);
  assert.equal(frame[1], 127);
  const events = decodeAll(frame);
  assert.equal(events.length, 1);
  assert.deepEqual(events[0], { type: "binary", data: big });
});

Deno.test("FrameDecoder lets go of a buffer grown for a large frame once it is used up", () => {
  const decoder = new FrameDecoder();
  const big = new Uint8Array(1024 * 1024).fill(7);
  const events = decoder.push(serverFrame(OPCODE.binary, big));
  assert.deepEqual(events, [{ type: "binary", data: big }]);
  assert.deepEqual(decoder.push(serverFrame(OPCODE.text, "small")), [{
    type: "text",
    data: "small",
  }]);
  assert.ok(decoder.capacity <= 64 * 1024, `it still holds ${decoder.capacity} bytes`);
});

Deno.test("FrameDecoder reads close frames: code and reason, or 1005 when empty", () => {
  assert.deepEqual(decodeAll(serverFrame(OPCODE.close, closePayload(4001, "bye now"))), [
    { type: "close", code: 4001, reason: "bye now" },
  ]);
  assert.deepEqual(decodeAll(serverFrame(OPCODE.close, new Uint8Array(0))), [
    { type: "close", code: 1005, reason: "" },
  ]);
});

Deno.test("FrameDecoder ignores whatever follows a close frame", () => {
  const events = decodeAll(concat(
    serverFrame(OPCODE.close, closePayload(1000)),
    serverFrame(OPCODE.text, "too late"),
    new Uint8Array([0xff, 0xff]),
  ));
  assert.deepEqual(events, [{ type: "close", code: 1000, reason: "" }]);
});

Deno.test("FrameDecoder refuses a message over the limit with 1009 before buffering it", () => {
  const decoder = new FrameDecoder({ maxMessageBytes: 1000 });
  // Only the header of a 2000-byte frame: refused at once.
  const header = serverFrame(OPCODE.binary, new Uint8Array(2000)).subarray(0, 4);
  assertProtocolError(() => decoder.push(header), 1009, /^message over 1000 bytes$/);
  // Fragments count together.
  assertProtocolError(
    () =>
      decodeAll(
        concat(
          serverFrame(OPCODE.binary, new Uint8Array(600), false),
          serverFrame(OPCODE.continuation, new Uint8Array(600)),
        ),
        { maxMessageBytes: 1000 },
      ),
    1009,
    /^message over 1000 bytes$/,
  );
  assert.equal(
    decodeAll(serverFrame(OPCODE.binary, new Uint8Array(1000)), { maxMessageBytes: 1000 }).length,
    1,
  );
});

Deno.test("FrameDecoder refuses frames that break RFC 6455 with 1002 or 1007", () => {
  const cases: [string, Uint8Array, number, RegExp][] = [
    ["reserved bit", new Uint8Array([0x81 | 0x40, 0]), 1002, /^reserved bits set/],
    ["opcode 3", new Uint8Array([0x83, 0]), 1002, /^invalid opcode 3$/],
    ["opcode 11", new Uint8Array([0x8b, 0]), 1002, /^invalid opcode 11$/],
    ["masked", encodeFrame(OPCODE.text, utf8.encode("x"), { mask: MASK }), 1002, /^masked frame/],
    ["fragmented ping", serverFrame(OPCODE.ping, "x", false), 1002, /control frame/],
    ["long ping", serverFrame(OPCODE.ping, new Uint8Array(126)), 1002, /control frame/],
    ["lone continuation", serverFrame(OPCODE.continuation, "x"), 1002, /without a message/],
    [
      "text inside a fragmented message",
      concat(serverFrame(OPCODE.text, "a", false), serverFrame(OPCODE.text, "b")),
      1002,
      /^new message inside/,
    ],
    ["one-byte close", serverFrame(OPCODE.close, new Uint8Array([3])), 1002, /one byte/],
    ["close code 1005", serverFrame(OPCODE.close, new Uint8Array([0x03, 0xed])), 1002, /1005/],
    ["close code 999", serverFrame(OPCODE.close, new Uint8Array([0x03, 0xe7])), 1002, /999/],
    [
      "64-bit length with the top bit",
      new Uint8Array([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]),
      1002,
      /top bit/,
    ],
    ["invalid UTF-8 text", serverFrame(OPCODE.text, new Uint8Array([0xc3, 0x28])), 1007, /UTF-8/],
    [
      "invalid UTF-8 reason",
      serverFrame(OPCODE.close, new Uint8Array([0x03, 0xe8, 0xff])),
      1007,
      /close reason/,
    ],
  ];
  for (const [name, bytes, code, message] of cases) {
    assert.throws(() => decodeAll(bytes), (e: unknown) => {
      assert.ok(e instanceof WebSocketProtocolError, name);
      assert.equal(e.code, code, name);
      assert.match(e.message, message, name);
      return true;
    });
  }
});

Deno.test("FrameDecoder returns the messages before a bad frame and throws after them", () => {
  const decoder = new FrameDecoder();
  const bad = serverFrame(OPCODE.text, new Uint8Array([0xc3, 0x28]));
  const events = decoder.push(
    concat(serverFrame(OPCODE.text, "one"), serverFrame(OPCODE.binary, "2"), bad),
  );
  assert.deepEqual(events.map((e) => e.type), ["text", "binary"]);
  assertProtocolError(() => decoder.throwPending(), 1007, /UTF-8/);
  decoder.throwPending(); // thrown once
  // A bad frame first: thrown at once.
  assertProtocolError(() => new FrameDecoder().push(bad), 1007, /UTF-8/);
});

Deno.test("closePayload() carries code and reason, cut to 123 bytes on a character boundary", () => {
  assert.deepEqual([...closePayload(1000, "ok")], [0x03, 0xe8, 0x6f, 0x6b]);
  assert.equal(closePayload(1005, "ignored").length, 0);
  const long = "é".repeat(100); // 200 bytes
  assert.equal(utf8.encode(truncateReason(long)).length, 122);
  assert.equal(closePayload(1001, long).length, 2 + 122);
  assert.equal(truncateReason("short"), "short");
});
