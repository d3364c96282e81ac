// Open WebSockets relayed by this isolate, so shutdown can close them cleanly.

/** Closes one relayed WebSocket (both legs) with a code and reason. */
export type WebSocketCloser = (code: number, reason: string) => void;

/** The WebSockets currently relayed. */
export class WebSocketRegistry {
  readonly #open = new Set<WebSocketCloser>();

  /** Registers an open WebSocket; call the returned function when it has closed. */
  add(close: WebSocketCloser): () => void {
    this.#open.add(close);
    return () => this.#open.delete(close);
  }

  /** How many are open. */
  get count(): number {
    return this.#open.size;
  }

  /** Closes every open WebSocket (1001 "going away" by default). */
  closeAll(code = 1001, reason = "Strom is shutting down"): void {
    for (const close of [...this.#open]) {
      try {
        close(code, reason);
      } catch { /* already closing */ }
    }
  }
}
