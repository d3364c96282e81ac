// A streamed request body as the client sends it, watched on its way upstream:
// whether an attempt has read from it (then no other attempt may send it: the
// bytes read are gone), whether it ended, and whether the client's side failed
// (a client that aborts or breaks its upload is not the backend's failure).

/** A client's body that did not have the length its Content-Length announced. */
export class BodyLengthMismatch extends Error {
  constructor(received: number, declared: number) {
    super(`the client's body ended after ${received} of the ${declared} bytes it announced`);
  }
}

/**
 * The mismatch, if `received` bytes (all of them once `done`) break the body's
 * Content-Length (`declared`; null: none): more than it, or fewer at the end.
 */
export function lengthMismatch(
  received: number,
  declared: number | null,
  done: boolean,
): BodyLengthMismatch | null {
  if (declared === null) return null;
  return received > declared || (done && received !== declared)
    ? new BodyLengthMismatch(received, declared)
    : null;
}

/** The client's streamed body, for one attempt after another. */
export class ClientBody {
  /** What attempts read; read it only through this. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Some attempt pulled from it. */
  touched = false;
  /** Bytes the client has sent so far. */
  bytes = 0;
  /** Why reading from the client failed (it went away, or sent a broken body); null if it did not. */
  failure: unknown = null;
  /**
   * An attempt was waiting for the client's next bytes (not for the backend to
   * take them) when it ended; a cancel (the attempt gave up) leaves it as it was.
   */
  waitingForClient = false;
  /** Told each time bytes move: the client sent some, and the attempt reading it took them. */
  onProgress: (() => void) | null = null;
  #cancelled = false;
  #ended = false;
  #abandoned = false;
  readonly #source: ReadableStreamDefaultReader<Uint8Array>;

  /**
   * `declared`: the body's Content-Length, if it has one. A body that ends
   * short of it is a broken one, never a whole one: an HTTP/2 client can end
   * its stream early (END_STREAM, then RST_STREAM: how Node's http2 cancels
   * an upload), and Deno ends the body as if it were complete.
   */
  constructor(source: ReadableStream<Uint8Array>, declared: number | null = null) {
    const reader = this.#source = source.getReader();
    this.stream = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        this.touched = true;
        let chunk: ReadableStreamReadResult<Uint8Array>;
        this.waitingForClient = true;
        try {
          chunk = await reader.read();
        } catch (e) {
          this.failure = e;
          throw e;
        }
        if (!this.#cancelled) this.waitingForClient = false;
        if (this.#abandoned) {
          // Never a normal end: a reader still sending upstream would pass the cut body off
          // as whole (a chunked body ends with its last chunk).
          controller.error(new Error("the exchange ended before the client's body did"));
        } else {
          if (chunk.done) this.#ended = true;
          else this.bytes += chunk.value.length;
          this.onProgress?.();
          const mismatch = lengthMismatch(this.bytes, declared, chunk.done);
          if (mismatch !== null) {
            this.failure = mismatch;
            controller.error(mismatch);
            if (!chunk.done) reader.cancel().catch(() => {});
          } else if (chunk.done) controller.close();
          else controller.enqueue(chunk.value);
        }
      },
      cancel: (reason) => {
        this.#cancelled = true;
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Gives up the rest of the client's body once the exchange is over: a
   * backend that answered early leaves it unread. Deno's fetch stops pulling
   * without cancelling, and Deno then kept the client's connection even after
   * the client closed it (CLOSE-WAIT, a descriptor lost for good).
   */
  abandon(): void {
    if (this.#ended || this.#cancelled) return;
    this.#cancelled = this.#abandoned = true;
    this.#source.cancel().catch(() => {});
  }

  /** Whether another attempt can send it: only if none has touched it (or locked it). */
  get replayable(): boolean {
    return !this.touched && !this.stream.locked;
  }
}
