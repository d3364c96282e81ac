// MaxBodySize { limit }: request bodies over `limit` bytes get 413. A declared
// Content-Length is refused before the backend is contacted; a body without
// one (chunked) is counted as it streams and cut off when it passes the limit,
// which RustStrom never did (spec §2.10.4).

import { HttpError, type MiddlewareSpec } from "./middleware.ts";

/** Options: `limit` in bytes. */
export type MaxBodySizeOptions = { readonly limit: number };

/** The body-size middleware's spec. */
export const maxBodySize: MiddlewareSpec<MaxBodySizeOptions> = {
  name: "MaxBodySize",
  parse: (r) => ({ limit: r.int("limit")! }),
  create({ limit }) {
    return async (context, next) => {
      const tooLarge = new HttpError(413, { message: `request body over ${limit} bytes` });
      const declared = context.fields.find(([name]) => name === "content-length")?.[1];
      if (declared !== undefined) {
        // The server enforces a declared length, so only the header needs checking.
        if (Number(declared) > limit) throw tooLarge;
        return await next();
      }
      if (context.body !== null) {
        context.body = context.body.pipeThrough(countingStream(limit, () => {
          context.bodyError = tooLarge;
          return tooLarge;
        }));
      }
      const response = await next();
      // The backend answered before the body passed the limit: the stream is cut
      // when it does, which resets the upload (the answer has already started).
      return response;
    };
  },
};

/** Passes chunks through until more than `limit` bytes went by, then errors the stream. */
export function countingStream(
  limit: number,
  onExceeded: () => Error,
): TransformStream<Uint8Array, Uint8Array> {
  let total = 0;
  return new TransformStream({
    transform(chunk, controller) {
      total += chunk.byteLength;
      if (total > limit) controller.error(onExceeded());
      else controller.enqueue(chunk);
    },
  });
}
