// Byte-array helpers shared by the WebSocket codec, the health probe, the bench and the tests.

/** Joins byte arrays into one new array; `total` is their summed length when already known. */
export function concatBytes(
  parts: readonly Uint8Array[],
  total = parts.reduce((n, p) => n + p.length, 0),
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
