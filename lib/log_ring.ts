// The last application log lines, kept in memory for the admin API.

import { LEVELS, type LogRecord } from "./log.ts";

/** A bounded ring of log records. */
export class LogRing {
  readonly #capacity: number;
  readonly #records: LogRecord[] = [];
  #next = 0;

  constructor(capacity = 2000) {
    this.#capacity = capacity;
  }

  /** Keeps a record, dropping the oldest beyond capacity. */
  push(record: LogRecord): void {
    if (this.#records.length < this.#capacity) this.#records.push(record);
    else {
      this.#records[this.#next] = record;
      this.#next = (this.#next + 1) % this.#capacity;
    }
  }

  /**
   * Records oldest first, at `level` or more severe, whose message contains
   * `q` (case-insensitive); at most `limit` (the newest).
   */
  query(options: { level?: string; q?: string; limit?: number } = {}): LogRecord[] {
    const ordered = [...this.#records.slice(this.#next), ...this.#records.slice(0, this.#next)];
    const rank = options.level ? LEVELS.indexOf(options.level as never) : LEVELS.length;
    const q = options.q?.toLowerCase();
    const out = ordered.filter((r) =>
      LEVELS.indexOf(r.level) <= (rank < 0 ? LEVELS.length : rank) &&
      (!q || r.message.toLowerCase().includes(q))
    );
    return out.slice(-(options.limit ?? 500));
  }
}
