// A clock that only moves when told to, for deterministic timing tests.

import type { Clock } from "../../lib/clock.ts";

/** A manual clock: `advance(ms)` moves time and runs the timers that fall due. */
export class ManualClock implements Clock {
  #now: number;
  #next = 1;
  #timers = new Map<number, { at: number; callback: () => void }>();

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, delayMs: number): number {
    const handle = this.#next++;
    this.#timers.set(handle, { at: this.#now + Math.max(0, delayMs), callback });
    return handle;
  }

  clearTimeout(handle: number): void {
    this.#timers.delete(handle);
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward, running due timers in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    while (true) {
      let due: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= target && (!due || entry[1].at < due[1].at)) due = entry;
      }
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].callback();
    }
    this.#now = target;
  }
}

/** One turn of the real event loop: lets promises started by a manual clock's timers settle. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A logger sink that keeps lines, for asserting on log output. */
export function captureLog(): {
  lines: string[];
  sink: (r: { level: string; message: string }) => void;
} {
  const lines: string[] = [];
  return { lines, sink: (r) => lines.push(`${r.level} ${r.message}`) };
}
