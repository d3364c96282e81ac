// Request deadlines without a timer per request: deadlines with the same
// timeout expire in the order they were set, so each timeout keeps a linked
// list (O(1) add and remove) checked by one coarse periodic tick.

import type { Clock } from "../clock.ts";

/** How often expired deadlines are looked for; a timeout fires up to this late. */
export const TICK_MS = 10;

/** One armed deadline; `cancel()` disarms it. */
export interface Deadline {
  cancel(): void;
}

/** What the armed deadlines of one Deadlines count. */
interface Armed {
  count: number;
}

/** One armed deadline, in the list of its timeout: itself the handle `set` returns. */
class Node implements Deadline {
  prev: Node | null = null;
  next: Node | null = null;
  constructor(
    readonly at: number,
    readonly onExpire: () => void,
    readonly list: List,
    readonly armed: Armed,
  ) {}

  cancel(): void {
    if (this.list.has(this)) {
      this.list.remove(this);
      this.armed.count--;
    }
  }
}

class List {
  head: Node | null = null;
  tail: Node | null = null;

  add(node: Node): void {
    node.prev = this.tail;
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
  }

  has(node: Node): boolean {
    return node.prev !== null || this.head === node;
  }

  remove(node: Node): void {
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev;
    node.prev = node.next = null;
  }
}

/** Deadlines grouped by timeout, expired by one periodic tick while any are armed. */
export class Deadlines {
  readonly #clock: Clock;
  readonly #lists = new Map<number, List>();
  readonly #armed: Armed = { count: 0 };
  #ticking = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Calls `onExpire` about `timeoutMs` from now unless cancelled first. */
  set(timeoutMs: number, onExpire: () => void): Deadline {
    let list = this.#lists.get(timeoutMs);
    if (!list) this.#lists.set(timeoutMs, list = new List());
    const node = new Node(this.#clock.now() + timeoutMs, onExpire, list, this.#armed);
    list.add(node);
    this.#armed.count++;
    if (!this.#ticking) this.#schedule();
    return node;
  }

  #schedule(): void {
    this.#ticking = true;
    this.#clock.setTimeout(() => this.#tick(), TICK_MS);
  }

  #tick(): void {
    const now = this.#clock.now();
    for (const list of this.#lists.values()) {
      while (list.head !== null && list.head.at <= now) {
        const node = list.head;
        list.remove(node);
        this.#armed.count--;
        node.onExpire();
      }
    }
    this.#ticking = false;
    if (this.#armed.count > 0) this.#schedule();
  }
}
