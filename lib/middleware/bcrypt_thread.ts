// bcrypt off the JavaScript thread: one worker per isolate, shared by every
// BasicAuth middleware (reference-counted, so a reload that keeps BasicAuth
// keeps the worker), started when the first one is created and ended when the
// last one closes. Jobs wait in the worker's queue; past MAX_WAITING, a check
// fails at once instead of growing a queue that a flood of wrong passwords fills.

// The worker module (./bcrypt_worker.ts) is not imported here, not even for
// types: bcryptjs stays out of start-up's module graph (startup_imports_test).

/** What to do: compare `password` with `hash`, or hash `password` at `cost`. */
type Job =
  | { readonly op: "compare"; readonly password: string; readonly hash: string }
  | { readonly op: "hash"; readonly password: string; readonly cost: number };

/** A job as the worker gets it. */
export type BcryptJob = Job & { readonly id: number };

/** The worker's answer to job `id`: `ok` for compare, `hash` for hash, or what went wrong. */
export type BcryptAnswer =
  | { readonly id: number; readonly ok: boolean }
  | { readonly id: number; readonly hash: string }
  | { readonly id: number; readonly error: string };

/** Checks waiting or running at once, beyond which a check is refused. */
export const MAX_WAITING = 256;

type Pending = { resolve: (answer: BcryptAnswer) => void; reject: (e: Error) => void };

/** Thrown when MAX_WAITING checks are already waiting. */
export class BcryptBusy extends Error {}

/** The isolate's bcrypt worker. */
class BcryptThread {
  #worker: Worker | null = null;
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  /** No user left: ended once the checks in progress are answered. */
  #stopping = false;

  #start(): Worker {
    const worker = new Worker(new URL("./bcrypt_worker.ts", import.meta.url), { type: "module" });
    worker.onmessage = (event: MessageEvent<BcryptAnswer>) => {
      const waiting = this.#pending.get(event.data.id);
      this.#pending.delete(event.data.id);
      waiting?.resolve(event.data);
      if (this.#stopping && this.#pending.size === 0) this.#fail(new Error("stopped"));
    };
    worker.onerror = (event) => {
      // The worker died (it should not): fail what waits; the next job starts another.
      event.preventDefault();
      this.#fail(new Error(`the bcrypt thread failed: ${event.message}`));
    };
    return worker;
  }

  #fail(error: Error): void {
    this.#worker?.terminate();
    this.#worker = null;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }

  run(job: Job): Promise<BcryptAnswer> {
    if (this.#pending.size >= MAX_WAITING) {
      return Promise.reject(new BcryptBusy(`${MAX_WAITING} password checks are waiting`));
    }
    const worker = this.#worker ??= this.#start();
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, ...job } satisfies BcryptJob);
    });
  }

  /** Ends the worker once what it is doing is answered. */
  stop(): void {
    this.#stopping = true;
    if (this.#pending.size === 0) this.#fail(new Error("stopped"));
  }
}

let shared: BcryptThread | null = null;
let users = 0;

/** bcrypt for one user of the shared thread; close() when done with it. */
export interface Bcrypt {
  compare(password: string, hash: string): Promise<boolean>;
  hash(password: string, cost: number): Promise<string>;
  close(): void;
}

function checked(answer: BcryptAnswer): boolean {
  if ("ok" in answer) return answer.ok;
  throw new Error("error" in answer ? answer.error : "the bcrypt thread answered a hash");
}

function hashed(answer: BcryptAnswer): string {
  if ("hash" in answer) return answer.hash;
  throw new Error("error" in answer ? answer.error : "the bcrypt thread answered a check");
}

/** A handle on the isolate's bcrypt thread (started by the first handle). */
export function openBcrypt(): Bcrypt {
  const thread = shared ??= new BcryptThread();
  users++;
  let open = true;
  return {
    compare: async (password, hash) => checked(await thread.run({ op: "compare", password, hash })),
    hash: async (password, cost) => hashed(await thread.run({ op: "hash", password, cost })),
    close: () => {
      if (!open) return;
      open = false;
      if (--users === 0 && shared === thread) {
        shared = null;
        thread.stop();
      }
    },
  };
}
