// Client timeouts: a connection to one of Strom's ports that has not delivered
// a request head within `client_header_timeout` of being accepted (a silent
// client, a slowloris trickling its head, a TLS client stalling its
// handshake), or that has been idle for `client_idle_timeout` since its last
// request (a keep-alive connection, or a slow next head), is closed.
// Connections with a request or a WebSocket in progress are never closed
// here, however long they last (send_timeout and request_timeout bound those).
//
// Once a second: list the connections on the watched ports (lib/net/sockets.ts),
// mark those whose peer some isolate served since the last round
// (lib/net/activity.ts), and shut the ones past their limit. A connection is
// first seen at most one round after it was accepted, so it is closed between
// the limit and the limit plus two rounds (a round is 1 s, and up to 5 s on a
// host with so many sockets that listing them costs more than 40 ms).

import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import { canonicalPeer, type SocketTable } from "./sockets.ts";

/** The limits in force; 0 turns one off. */
export interface ClientLimits {
  readonly headerMs: number;
  readonly idleMs: number;
}

/** Why a connection was closed. */
export type TimeoutReason = "header" | "idle";

export interface ClientTimeoutsOptions {
  readonly clock: Clock;
  readonly log: Logger;
  readonly table: SocketTable;
  /** The ports Strom's listeners serve on (proxy, HTTPS, admin). */
  readonly ports: () => Iterable<number>;
  /**
   * Peer keys every isolate served since the previous call, or serves now;
   * null when that is not known this round (a worker did not answer).
   */
  readonly peers: () => Iterable<string> | null | Promise<Iterable<string> | null>;
  readonly limits: () => ClientLimits;
  /** After each round: connections seen, and how many each reason closed. */
  readonly onRound?: (open: number, closed: Record<TimeoutReason, number>) => void;
  /** Called once by stop(). */
  readonly onStop?: () => void;
}

interface Tracked {
  /** When it was last seen busy, or first seen. */
  since: number;
  /** Whether a request ever started on it. */
  served: boolean;
}

/** Round interval. */
export const ROUND_MS = 1000;
/** Longest round interval, however costly rounds are. */
export const MAX_ROUND_MS = 5000;
/** Rounds are spaced at least this many times their own duration apart. */
const COST_SHARE = 25;

/** Watches client connections and closes those past their limit. */
export class ClientTimeouts {
  readonly #o: ClientTimeoutsOptions;
  readonly #tracked = new Map<string, Tracked>();
  #unlisted: string[] = [];
  #timer: number | undefined;
  #stopped = false;

  constructor(options: ClientTimeoutsOptions) {
    this.#o = options;
  }

  /**
   * Runs rounds until stop(): every ROUND_MS, or further apart when a round
   * is costly (tens of thousands of sockets on the host), so that rounds take
   * at most 1/COST_SHARE of the time, and never more than MAX_ROUND_MS apart.
   */
  start(): void {
    const next = (delay: number) => {
      if (this.#stopped) return;
      this.#timer = this.#o.clock.setTimeout(async () => {
        const started = this.#o.clock.now();
        try {
          await this.round();
        } catch (e) {
          this.#o.log.warn(`Client timeouts: ${e instanceof Error ? e.message : e}`);
        }
        const cost = (this.#o.clock.now() - started) * COST_SHARE;
        next(Math.min(MAX_ROUND_MS, Math.max(ROUND_MS, cost)));
      }, delay);
    };
    next(ROUND_MS);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#o.onStop?.();
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
  }

  /** One round (tests call it directly): returns the inodes shut, by reason. */
  async round(): Promise<Record<TimeoutReason, string[]>> {
    const limits = this.#o.limits();
    const sockets = await this.#o.table.list(new Set(this.#o.ports()));
    // Asked after listing, right before deciding: a request that began on a
    // connection meanwhile keeps it.
    const peers = await this.#o.peers();
    const now = this.#o.clock.now();
    // Peers served last round on a connection accepted after its listing: listed only now.
    const busy = new Set<string>(this.#unlisted);
    const seen = new Set<string>();
    for (const key of peers ?? []) {
      const peer = canonicalPeer(key);
      if (peer !== null) {
        busy.add(peer);
        seen.add(peer);
      }
    }
    const listed = new Set<string>();
    const present = new Set<string>();
    const due = new Map<string, TimeoutReason>();
    for (const socket of sockets) {
      present.add(socket.inode);
      listed.add(socket.peer);
      let t = this.#tracked.get(socket.inode);
      if (t === undefined) {
        t = { since: now, served: false };
        this.#tracked.set(socket.inode, t);
      }
      if (busy.has(socket.peer)) {
        t.since = now;
        t.served = true;
        continue;
      }
      if (peers === null) continue; // unknown: close nothing this round
      const limit = t.served ? limits.idleMs : limits.headerMs;
      if (limit > 0 && now - t.since >= limit) due.set(socket.inode, t.served ? "idle" : "header");
    }
    for (const inode of this.#tracked.keys()) if (!present.has(inode)) this.#tracked.delete(inode);
    // A connection accepted after the listing whose request ended before `peers()` was asked:
    // its mark would be used up unseen, and next round it would look as if it never sent a
    // request (closed after client_header_timeout, not client_idle_timeout). Kept one round.
    // This round's only: carried on, a peer whose connection had closed unlisted stayed busy for
    // good, so a new connection from its address and port counted as served (the idle limit,
    // 60 s, instead of the header limit; a probe), and the list grew with every such peer.
    this.#unlisted = [...seen].filter((peer) => !listed.has(peer));
    const closed: Record<TimeoutReason, string[]> = { header: [], idle: [] };
    if (due.size > 0) {
      const shut = await this.#o.table.shut(new Set(due.keys()));
      for (const [inode, reason] of due) {
        if (shut.has(inode)) {
          closed[reason].push(inode);
          this.#tracked.delete(inode);
        }
        // Not found among this process's descriptors: still in the kernel's
        // accept queue, or another process's; tried again next round.
      }
      const sum = closed.header.length + closed.idle.length;
      if (sum > 0) {
        this.#o.log.debug(
          `Closed ${closed.header.length} connection(s) without a request head after ${limits.headerMs} ms and ${closed.idle.length} idle for ${limits.idleMs} ms`,
        );
      }
    }
    this.#o.onRound?.(sockets.length, { header: closed.header.length, idle: closed.idle.length });
    return closed;
  }
}
