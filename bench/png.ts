// A tiny PNG line chart (no dependencies beyond node:zlib): enough to plot a
// soak run's memory, descriptors and throughput over time.

import { deflateSync } from "node:zlib";
import { concatBytes } from "../lib/bytes.ts";

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Encodes RGB pixels (width × height × 3) as a PNG file. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Uint8Array {
  const raw = new Uint8Array(height * (width * 3 + 1));
  for (let y = 0; y < height; y++) {
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", header),
    chunk("IDAT", new Uint8Array(deflateSync(raw))),
    chunk("IEND", new Uint8Array(0)),
  ];
  return concatBytes(parts);
}

/** Draws one series (x = seconds, y = value) as a line chart with a zero-based y axis and grid. */
export function lineChart(
  points: [number, number][],
  options: { width?: number; height?: number } = {},
): Uint8Array {
  const width = options.width ?? 640;
  const height = options.height ?? 240;
  const pad = 24;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  const set = (x: number, y: number, c: [number, number, number]) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    rgb.set(c, (Math.round(y) * width + Math.round(x)) * 3);
  };
  const maxX = Math.max(1, ...points.map((p) => p[0]));
  const maxY = Math.max(1, ...points.map((p) => p[1])) * 1.1;
  const px = (x: number) => pad + (x / maxX) * (width - 2 * pad);
  const py = (y: number) => height - pad - (y / maxY) * (height - 2 * pad);
  for (let i = 0; i <= 4; i++) {
    const y = pad + (i * (height - 2 * pad)) / 4;
    for (let x = pad; x < width - pad; x += 2) set(x, y, [220, 220, 220]);
  }
  for (let x = pad; x < width - pad; x++) set(x, height - pad, [0, 0, 0]);
  for (let y = pad; y < height - pad; y++) set(pad, y, [0, 0, 0]);
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = [px(points[i - 1][0]), py(points[i - 1][1])];
    const [x1, y1] = [px(points[i][0]), py(points[i][1])];
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      set(x, y, [30, 90, 200]);
      set(x, y + 1, [30, 90, 200]);
    }
  }
  return encodePng(width, height, rgb);
}
