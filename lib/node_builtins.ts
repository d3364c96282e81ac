// Node's built-in modules that only some configs need (Compression, TLS
// certificates, ACME, StickyCookie, password checks), loaded on first use
// instead of at start-up. Each costs megabytes once loaded (alone, measured on
// Deno 2.9.6: node:crypto, node:http and node:zlib ~6 MB of RSS each); a Strom
// that uses none of them should not pay for them. `getBuiltinModule` loads a
// module synchronously, so call sites stay synchronous; callers that run per
// request load theirs while the config is built, not on a client's request.

import process from "node:process";

type Crypto = typeof import("node:crypto");
type Zlib = typeof import("node:zlib");
type AsyncHooks = typeof import("node:async_hooks");
type Https = typeof import("node:https");

export const nodeCrypto = (): Crypto => process.getBuiltinModule("node:crypto") as Crypto;
export const nodeZlib = (): Zlib => process.getBuiltinModule("node:zlib") as Zlib;
export const nodeAsyncHooks = (): AsyncHooks =>
  process.getBuiltinModule("node:async_hooks") as AsyncHooks;
export const nodeHttps = (): Https => process.getBuiltinModule("node:https") as Https;
