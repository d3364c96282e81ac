import assert from "node:assert/strict";
import { readConfigText, readFailure } from "../../lib/config/files.ts";

const onLinux = { ignore: Deno.build.os !== "linux" };

Deno.test("readConfigText() reads a regular file and refuses one over its limit", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/page.html`, "<h1>é</h1>");
    assert.equal(readConfigText(`${dir}/page.html`), "<h1>é</h1>");
    Deno.writeFileSync(`${dir}/big.pem`, new Uint8Array(1025));
    assert.throws(() => readConfigText(`${dir}/big.pem`, 1024), /^Error: larger than 1024 bytes$/);
    assert.equal(readConfigText(`${dir}/big.pem`, 1025).length, 1025);
    assert.throws(() => readConfigText(dir), (e) => readFailure(e) === "it is a directory");
    assert.throws(() => readConfigText(`${dir}/none`), (e) => readFailure(e) === "no such file");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test(
  "readConfigText() refuses a device and a socket, which are no files to read whole",
  onLinux,
  () => {
    // /dev/zero never ends: read whole, it grew the process until memory ran out.
    assert.throws(() => readConfigText("/dev/zero"), /not a regular file/);
    // A FIFO blocked the process until someone wrote to it; a socket stands in for it here
    // (opening one fails at once instead of blocking, should the check ever go).
    const dir = Deno.makeTempDirSync();
    const listener = Deno.listen({ transport: "unix", path: `${dir}/sock` });
    try {
      assert.throws(() => readConfigText(`${dir}/sock`), /not a regular file/);
    } finally {
      listener.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
);
