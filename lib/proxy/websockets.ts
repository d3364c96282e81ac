// Open WebSockets relayed by this isolate, so shutdown can close them cleanly.

/** Closes one relayed WebSocket (both legs) with a code and reason. */
export type WebSocketCloser = (code: number, reason: string) => void;

/** The WebSockets currently relayed. */
export class WebSocketRegistry {
  readonly #open = new Set<WebSocketCloser>();
  #whenEmpty: (() => void)[] = [];

  /** Registers an open WebSocket; call the returned function when it has closed. */
  add(close: WebSocketCloser): () => void {
    this.#open.add(close);
    return () => {
      this.#open.delete(close);
      if (this.#open.size === 0) { for (const resolve of this.#whenEmpty.splice(0)) resolve(); }
    };
  }

  /** How many are open. */
  get count(): number {
    return this.#open.size;
  }

  /**
   * Closes every open WebSocket (1001 "going away" by default). Resolves once
   * all of them have ended, so shutdown may wait for their close handshakes.
   */
  closeAll(code = 1001, reason = "Strom is shutting down"): Promise<void> {
    for (const close of [...this.#open]) {
      try {
        close(code, reason);
      } catch { /* already closing */ }
    }
    if (this.#open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#whenEmpty.push(resolve));
  }
}
