import { deepStrictEqual } from "node:assert/strict";
import { NGINX_FORWARDED } from "./peers.ts";
import { hasCommand, ProcessGroup } from "./procs.ts";
import type { BenchContext } from "./context.ts";
import { forwardedFields } from "../lib/proxy/headers.ts";

const NGINX = await hasCommand("nginx");

Deno.test({
  name: "nginx in scenario 3's extra run sends the X-Forwarded-* fields Strom adds",
  ignore: !NGINX,
  async fn() {
    // The names Strom adds to a request that carried only Host.
    const strom = forwardedFields(
      new Headers({ host: "a" }),
      { peerIp: "127.0.0.1", peerTrusted: false, clientIp: "127.0.0.1" },
      { proto: "http", port: "80", serverName: "lb", host: "a" },
    ).map(([name]) => name).filter((name) => name !== "host");
    const seen: string[][] = [];
    const backend = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
      seen.push([...request.headers.keys()]);
      return new Response("ok");
    });
    const tmp = await Deno.makeTempDir();
    const group = new ProcessGroup();
    const ctx: BenchContext = {
      group,
      tmp,
      repo: ".",
      rawDir: tmp,
      options: { quick: true, only: [], stromExtra: "", stromVariants: [], rounds: 1 },
    };
    try {
      const target = await NGINX_FORWARDED.start(ctx, [`127.0.0.1:${backend.addr.port}`]);
      const response = await fetch(target.url);
      await response.body?.cancel();
      const sent = seen[0].filter((name) => name.startsWith("x-"));
      deepStrictEqual(sent.sort(), strom.sort());
    } finally {
      await group.stopAll();
      await backend.shutdown();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

if (!NGINX) console.log("skipping the nginx bench test: install the Debian package nginx-light");
