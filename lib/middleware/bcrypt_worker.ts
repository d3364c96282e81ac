// The thread BasicAuth's bcrypt runs on (lib/middleware/bcrypt_thread.ts): a
// cost-10 check takes about 60 ms of CPU in bcryptjs, which on the JavaScript
// thread stalled every request of every pool meanwhile.

/// <reference lib="deno.worker" />

import bcrypt from "bcryptjs";
import type { BcryptJob } from "./bcrypt_thread.ts";

self.onmessage = (event: MessageEvent<BcryptJob>) => {
  const job = event.data;
  try {
    self.postMessage(
      job.op === "compare"
        ? { id: job.id, ok: bcrypt.compareSync(job.password, job.hash) }
        : { id: job.id, hash: bcrypt.hashSync(job.password, job.cost) },
    );
  } catch (e) {
    self.postMessage({ id: job.id, error: e instanceof Error ? e.message : String(e) });
  }
};
