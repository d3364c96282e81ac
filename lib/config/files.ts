// Reading the files a config names (certificates, keys, CA bundles, the admin
// token, error pages, htpasswd) at load, on the JavaScript thread: only
// regular files of a bounded size. A FIFO would block the whole process until
// someone wrote to it (proxy and admin API included, SIGTERM too), and a
// device such as /dev/zero would grow the process until the machine ran out
// of memory.

/** The largest file a config may name. */
export const MAX_CONFIG_FILE_BYTES = 8 * 1024 * 1024;

/**
 * The text (UTF-8) of the regular file at `path`, of at most `maxBytes`.
 * Throws Deno's NotFound, PermissionDenied or IsADirectory errors as reading
 * would, and an Error saying why for anything else that is not a regular file
 * or is larger.
 */
export function readConfigText(path: string, maxBytes = MAX_CONFIG_FILE_BYTES): string {
  const info = Deno.statSync(path);
  if (info.isDirectory) throw new Deno.errors.IsADirectory("it is a directory");
  if (!info.isFile) throw new Error("not a regular file (a FIFO, a socket or a device)");
  if (info.size > maxBytes) throw new Error(`larger than ${formatBytes(maxBytes)}`);
  using file = Deno.openSync(path, { read: true });
  // Read up to one byte more than allowed: the file may have grown since it was looked at.
  const bytes = new Uint8Array(Math.min(info.size, maxBytes) + 1);
  let length = 0;
  while (length < bytes.length) {
    const n = file.readSync(bytes.subarray(length));
    if (n === null) break;
    length += n;
  }
  if (length > maxBytes) throw new Error(`larger than ${formatBytes(maxBytes)}`);
  return new TextDecoder().decode(bytes.subarray(0, length));
}

function formatBytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / 1024 / 1024} MiB` : `${n} bytes`;
}

/** Why a file could not be read, in a few words (Deno's messages repeat the path). */
export function readFailure(error: unknown): string {
  return error instanceof Deno.errors.NotFound
    ? "no such file"
    : error instanceof Deno.errors.PermissionDenied
    ? "permission denied"
    : error instanceof Deno.errors.IsADirectory
    ? "it is a directory"
    : error instanceof Error && /unexpected NUL byte/.test(error.message)
    ? "a file name cannot hold a NUL character" // Deno's message repeats the path, NUL and all
    : error instanceof Error
    ? error.message
    : String(error);
}
