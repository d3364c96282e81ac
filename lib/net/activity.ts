// Which client connections are doing something, by peer address: what the
// client timeouts (lib/net/client_timeouts.ts) need to tell a slow or silent
// client from one that is being served.
//
// Deno.serve shows Strom no connections, only requests with their peer's
// address, and a peer's IP and port name one TCP connection. So each request
// holds its peer from the moment its head has arrived until its response was
// sent (`info.completed`), and a relayed WebSocket holds its peer until it
// closes. A connection whose peer is not held and was not seen lately is idle,
// or has not finished sending a request head.
//
// One instance per isolate (`isolateActivity`): the listener wrapper in
// lib/net/http_listener.ts and the WebSocket relay report into it. It records
// nothing until a reader exists (the primary's client timeouts, a worker's
// stats), so without one it costs nothing and holds no memory.

/** The key of a peer: its address as Deno reports it, and its port. */
export function peerKey(remote: Deno.NetAddr): string {
  return `${remote.hostname}|${remote.port}`;
}

/** Reads the peers busy since the reader's previous read. */
export interface ActivityReader {
  /** Peers holding now or seen since the previous call. */
  take(): string[];
  /** Stops reading; with no reader left, recording stops. */
  close(): void;
}

/**
 * Rounds a peer seen without being held is remembered: readers read once a
 * second, so this is many seconds, and it bounds the memory.
 */
const KEEP_ROUNDS = 16;

/** One peer: requests or WebSockets in progress, and the round it was last seen in. */
export interface PeerEntry {
  held: number;
  round: number;
}

/** Requests and WebSockets in progress per peer, and when each peer was last seen. */
export class ConnectionActivity {
  readonly #peers = new Map<string, PeerEntry>();
  /** Advances with every read, so each reader can ask for what came after its last one. */
  #round = 0;
  #readers = 0;

  /** Whether anything reads: without a reader, nothing is recorded. */
  get recording(): boolean {
    return this.#readers > 0;
  }

  /**
   * A request or WebSocket began on `key`'s connection; pass the entry to
   * `release` when it is over. Null when nothing is recorded.
   */
  hold(key: string): PeerEntry | null {
    if (this.#readers === 0) return null;
    let entry = this.#peers.get(key);
    if (entry === undefined) this.#peers.set(key, entry = { held: 0, round: 0 });
    entry.held++;
    entry.round = this.#round;
    return entry;
  }

  release(entry: PeerEntry | null): void {
    if (entry === null || entry.held === 0) return;
    entry.held--;
    entry.round = this.#round;
  }

  /** A new reader; from now on requests are recorded. */
  reader(): ActivityReader {
    this.#readers++;
    let from = this.#round;
    let open = true;
    return {
      take: () => {
        const out: string[] = [];
        for (const [key, entry] of this.#peers) {
          if (entry.round >= from || entry.held > 0) out.push(key);
          else if (entry.round < this.#round - KEEP_ROUNDS) this.#peers.delete(key);
        }
        from = ++this.#round;
        return out;
      },
      close: () => {
        if (!open) return;
        open = false;
        // Entries still held are dropped too: a release of one changes nothing.
        if (--this.#readers === 0) this.#peers.clear();
      },
    };
  }
}

/** This isolate's activity. */
export const isolateActivity = new ConnectionActivity();
