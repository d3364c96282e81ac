// The client timeouts' decisions (with a fake socket table and a manual clock),
// the /proc/net/tcp parser, peer canonicalization, and connection activity.

import assert from "node:assert/strict";
import { ClientTimeouts, type ClientTimeoutsOptions } from "../../lib/net/client_timeouts.ts";
import {
  canonicalIp,
  canonicalPeer,
  type ClientSocket,
  clientState,
  createSocketTable,
  diagRequest,
  openSocketTable,
  parseDiag,
  parseProcNetTcp,
  type SocketTable,
  tcpProgress,
} from "../../lib/net/sockets.ts";
import { ConnectionActivity } from "../../lib/net/activity.ts";
import { silentLogger } from "../../lib/log.ts";
import { ManualClock, nextTurn } from "../_helpers/clock.ts";
import { waitFor } from "../_helpers/servers.ts";

/** A socket table over a list the test edits; `owned` says which inodes this process holds. */
function fakeTable(sockets: ClientSocket[], owned = (_inode: string) => true) {
  const shutdowns: string[] = [];
  const table: SocketTable = {
    list: (ports) => Promise.resolve(sockets.filter((s) => ports.has(s.localPort))),
    shut(inodes) {
      const done = new Set([...inodes].filter(owned));
      for (const inode of done) {
        shutdowns.push(inode);
        sockets.splice(sockets.findIndex((s) => s.inode === inode), 1);
      }
      return Promise.resolve(done);
    },
  };
  return { table, shutdowns };
}

/** Client timeouts on port 8080 with a 3 s header and 10 s idle limit, unless `options` say otherwise. */
function watch(
  clock: ManualClock,
  table: SocketTable,
  options: Partial<ClientTimeoutsOptions> = {},
): ClientTimeouts {
  return new ClientTimeouts({
    clock,
    log: silentLogger,
    table,
    ports: () => [8080],
    peers: () => [],
    limits: () => ({ headerMs: 3000, idleMs: 10_000 }),
    ...options,
  });
}

function setup(sockets: ClientSocket[], options: { owned?: (inode: string) => boolean } = {}) {
  const clock = new ManualClock();
  const { table, shutdowns } = fakeTable(sockets, options.owned);
  let busy: string[] = [];
  const rounds: [number, number, number][] = [];
  const timeouts = watch(clock, table, {
    peers: () => busy,
    onRound: (open, closed) => rounds.push([open, closed.header, closed.idle]),
  });
  return {
    clock,
    shutdowns,
    rounds,
    timeouts,
    setBusy: (keys: string[]) => busy = keys,
    /** Advances a second and runs a round. */
    async second() {
      clock.advance(1000);
      return await timeouts.round();
    },
  };
}

const socket = (inode: string, peer: string, localPort = 8080): ClientSocket => ({
  inode,
  localPort,
  peer,
});

Deno.test("a connection without a request is closed after the header limit", async () => {
  const t = setup([socket("1", "10.0.0.1|5000"), socket("2", "10.0.0.2|5000", 9999)]);
  await t.timeouts.round(); // first seen
  assert.deepEqual(await t.second(), { header: [], idle: [] });
  assert.deepEqual(await t.second(), { header: [], idle: [] });
  assert.deepEqual(await t.second(), { header: ["1"], idle: [] });
  assert.deepEqual(t.shutdowns, ["1"], "a socket on another port is not watched");
  assert.deepEqual(t.rounds.at(-1), [1, 1, 0]);
});

Deno.test("a served connection gets the idle limit, counted from its last activity", async () => {
  const t = setup([socket("1", "10.0.0.1|5000")]);
  await t.timeouts.round();
  t.setBusy(["10.0.0.1|5000"]);
  await t.second();
  t.setBusy([]);
  for (let s = 1; s < 10; s++) {
    assert.deepEqual(await t.second(), { header: [], idle: [] }, `second ${s}`);
  }
  assert.deepEqual(await t.second(), { header: [], idle: ["1"] });
});

Deno.test("a connection served between a round's listing and its peers gets the idle limit", async () => {
  const sockets: ClientSocket[] = [];
  const t = setup(sockets);
  await t.timeouts.round();
  // Accepted after the listing of this round, and its request over before the peers are asked.
  t.setBusy(["10.0.0.1|5000"]);
  await t.second();
  sockets.push(socket("1", "10.0.0.1|5000"));
  t.setBusy([]);
  // Seen served from the next round on: idle for 10 s from then.
  for (let s = 1; s <= 10; s++) {
    assert.deepEqual(await t.second(), { header: [], idle: [] }, `second ${s}`);
  }
  assert.deepEqual(await t.second(), { header: [], idle: ["1"] }, "idle, not header");
});

Deno.test("a peer served on a connection gone unlisted is carried one round, not for good", async () => {
  const sockets: ClientSocket[] = [];
  const t = setup(sockets);
  await t.timeouts.round();
  // A request on a connection that closed between two listings: never listed.
  t.setBusy(["10.0.0.1|5000"]);
  await t.second();
  t.setBusy([]);
  await t.second(); // carried this round, for a connection accepted after the last listing
  await t.second();
  // Later, a new connection from the same address and port that sends nothing.
  sockets.push(socket("2", "10.0.0.1|5000"));
  await t.second(); // first seen
  await t.second();
  await t.second();
  // The header limit (3 s), not the idle one (10 s): before, the peer stayed busy for good.
  assert.deepEqual(await t.second(), { header: ["2"], idle: [] });
});

Deno.test("a busy connection is never closed", async () => {
  const t = setup([socket("1", "10.0.0.1|5000")]);
  t.setBusy(["::ffff:10.0.0.1|5000"]); // how Deno names an IPv4 client of a dual-stack listener
  for (let s = 0; s < 60; s++) assert.deepEqual(await t.second(), { header: [], idle: [] });
  assert.deepEqual(t.shutdowns, []);
});

Deno.test("a socket this process does not hold is tried again, and a gone one forgotten", async () => {
  let owned = false;
  const sockets = [socket("1", "10.0.0.1|5000")];
  const t = setup(sockets, { owned: () => owned });
  await t.timeouts.round();
  for (let s = 0; s < 3; s++) await t.second();
  assert.deepEqual(await t.second(), { header: [], idle: [] }, "not held yet (accept queue)");
  owned = true;
  assert.deepEqual(await t.second(), { header: ["1"], idle: [] });
  // A new connection that reuses the inode number starts from zero.
  sockets.push(socket("1", "10.0.0.9|6000"));
  assert.deepEqual(await t.second(), { header: [], idle: [] });
});

Deno.test("a round that cannot learn every isolate's peers closes nothing", async () => {
  const clock = new ManualClock();
  const { table, shutdowns } = fakeTable([socket("1", "10.0.0.1|5000")]);
  let known = false;
  const timeouts = watch(clock, table, {
    peers: () => Promise.resolve(known ? [] : null), // a worker did not answer
  });
  for (let s = 0; s < 10; s++) {
    clock.advance(1000);
    await timeouts.round();
  }
  assert.deepEqual(shutdowns, []);
  known = true;
  await timeouts.round();
  assert.deepEqual(shutdowns, ["1"]);
});

Deno.test("a limit of 0 is off", async () => {
  const clock = new ManualClock();
  const { table, shutdowns } = fakeTable([socket("1", "10.0.0.1|5000")]);
  const timeouts = watch(clock, table, { limits: () => ({ headerMs: 0, idleMs: 0 }) });
  for (let s = 0; s < 100; s++) {
    clock.advance(1000);
    await timeouts.round();
  }
  assert.deepEqual(shutdowns, []);
});

Deno.test("rounds run on the clock until stopped", async () => {
  const t = setup([socket("1", "10.0.0.1|5000")]);
  t.timeouts.start();
  for (let s = 0; s < 5; s++) {
    t.clock.advance(1000);
    await nextTurn(); // let the round's promise settle
  }
  assert.deepEqual(t.shutdowns, ["1"]);
  t.timeouts.stop();
  assert.equal(t.clock.pending, 0);
});

Deno.test("costly rounds are spaced out, up to 5 s apart", async () => {
  const clock = new ManualClock();
  let rounds = 0;
  let cost = 100;
  const table: SocketTable = {
    list: async () => {
      await Promise.resolve();
      rounds++;
      clock.advance(cost); // listing takes this long
      return [];
    },
    shut: () => Promise.resolve(new Set()),
  };
  const timeouts = watch(clock, table);
  const advance = async (ms: number) => {
    clock.advance(ms);
    await nextTurn(); // the round's promises settle
  };
  timeouts.start();
  await advance(1000);
  assert.equal(rounds, 1);
  await advance(2499);
  assert.equal(rounds, 1, "after a 100 ms round, the next comes 2.5 s later");
  cost = 1000;
  await advance(1);
  assert.equal(rounds, 2);
  await advance(4999);
  assert.equal(rounds, 2, "after a 1 s round, 5 s later (not 25 s)");
  await advance(1);
  assert.equal(rounds, 3);
  timeouts.stop();
});

const parse = (text: string, ports: number[]) =>
  parseProcNetTcp(new TextEncoder().encode(text), new Set(ports));

Deno.test("/proc/net/tcp and tcp6 lines give established connections on the watched ports", () => {
  const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt" +
    "   uid  timeout inode\n";
  const v4 = header +
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 111 1\n" +
    "   1: 0100007F:1F90 0200007F:C350 01 00000000:00000000 00:00000000 00000000  1000 0 222 1\n" +
    "   2: 0100007F:1F91 0200007F:C351 01 00000000:00000000 00:00000000 00000000  1000 0 333 1\n" +
    "   3: 0100007F:1F90 0300007F:C352 06 00000000:00000000 00:00000000 00000000  1000 0 0 1\n";
  assert.deepEqual(parse(v4, [8080]), [
    { inode: "222", localPort: 8080, peer: "127.0.0.2|50000" },
  ]);
  const v6 = header +
    "   0: 00000000000000000000000000000000:1F90 0000000000000000FFFF00000100007F:C350 01 " +
    "00000000:00000000 00:00000000 00000000 1000 0 444 1\n" +
    "   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C351 01 " +
    "00000000:00000000 00:00000000 00000000 1000 0 555 1\n" +
    "   2: 00000000000000000000000001000000:1F90 B80D0120000000000000000001000000:C352 01 " +
    "00000000:00000000 00:00000000 00000000 1000 0 666 1\n";
  assert.deepEqual(parse(v6, [8080]).map((s) => s.peer), [
    "127.0.0.1|50000",
    "0000:0000:0000:0000:0000:0000:0000:0001|50001",
    "2001:0db8:0000:0000:0000:0000:0000:0001|50002",
  ]);
  assert.deepEqual(parse("garbage\nmore garbage\n", [8080]), []);
  assert.deepEqual(parse(v4.replace("222", "22x"), [8080]), [], "a malformed inode");
});

/** A netlink message: header (type, length) and body. */
function netlink(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(4, type, true);
  out.set(body, 16);
  return out;
}

/** An inet_diag_msg for an established socket. */
function diagMsg(
  family: number,
  localPort: number,
  peer: number[],
  peerPort: number,
  inode: number,
) {
  const body = new Uint8Array(72);
  const v = new DataView(body.buffer);
  body[0] = family;
  body[1] = 1; // TCP_ESTABLISHED
  v.setUint16(4, localPort);
  v.setUint16(6, peerPort);
  body.set(peer, 24);
  v.setUint32(68, inode, true);
  return netlink(20, body);
}

Deno.test("sock_diag dumps give established connections on the watched ports", () => {
  const request = diagRequest(10, 7);
  assert.equal(request.length, 72);
  assert.deepEqual([...request.subarray(4, 8)], [20, 0, 0x01, 0x03], "SOCK_DIAG_BY_FAMILY, dump");
  assert.deepEqual([...request.subarray(16, 18)], [10, 6], "AF_INET6, TCP");
  assert.equal(new DataView(request.buffer).getUint32(20, true), 2, "ESTABLISHED only");
  const mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 0, 0, 2];
  const dump = [
    diagMsg(2, 8080, [127, 0, 0, 2], 50000, 222),
    diagMsg(2, 9999, [127, 0, 0, 3], 50001, 333),
    diagMsg(10, 8080, mapped, 50002, 444),
    diagMsg(10, 8080, [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1], 50003, 555),
  ];
  const bytes = new Uint8Array(dump.reduce((n, m) => n + m.length, 0));
  dump.reduce((at, m) => (bytes.set(m, at), at + m.length), 0);
  const first = parseDiag(bytes, new Set([8080]));
  assert.deepEqual(first.sockets, [
    { inode: "222", localPort: 8080, peer: "127.0.0.2|50000" },
    { inode: "444", localPort: 8080, peer: "127.0.0.2|50002" },
    { inode: "555", localPort: 8080, peer: "2001:0db8:0000:0000:0000:0000:0000:0001|50003" },
  ]);
  assert.equal(first.done, false);
  assert.deepEqual(parseDiag(netlink(3, new Uint8Array(4)), new Set([8080])), {
    sockets: [],
    done: true,
    error: 0,
  });
  const error = new Uint8Array(4);
  new DataView(error.buffer).setInt32(0, -97, true); // EAFNOSUPPORT
  assert.equal(parseDiag(netlink(2, error), new Set([8080])).error, -97);
  assert.equal(parseDiag(bytes.subarray(0, 50), new Set([8080])).sockets.length, 0, "cut short");
});

Deno.test({
  name: "sock_diag and /proc/net/tcp list the same real connections",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    const clients = await Promise.all(
      Array.from({ length: 3 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    const served = await Promise.all(clients.map(() => listener.accept()));
    try {
      const diag = createSocketTable();
      const proc = createSocketTable({ source: "proc" });
      assert.ok(typeof diag !== "string" && typeof proc !== "string");
      const byInode = (a: ClientSocket, b: ClientSocket) => a.inode.localeCompare(b.inode);
      const fromDiag = (await diag.list(new Set([port]))).sort(byInode);
      const fromProc = (await proc.list(new Set([port]))).sort(byInode);
      assert.equal(fromDiag.length, 3);
      assert.deepEqual(fromDiag, fromProc);
      const peers = clients.map((c) => `127.0.0.1|${c.localAddr.port}`).sort();
      assert.deepEqual(fromDiag.map((s) => s.peer).sort(), peers);
    } finally {
      for (const c of [...clients, ...served]) c.close();
      listener.close();
    }
  },
});

Deno.test({
  name: "a client's state is looked up by its connection's addresses, on any listener address",
  ignore: Deno.build.os !== "linux",
  async fn() {
    for (
      const [bound, connectTo] of [
        ["127.0.0.1", "127.0.0.1"],
        ["0.0.0.0", "127.0.0.1"], // a wildcard: the host's addresses are tried
        ["::", "127.0.0.1"], // IPv4 clients of an IPv6 listener: IPv4-mapped
        ["::1", "::1"],
      ]
    ) {
      let listener: Deno.TcpListener;
      try {
        listener = Deno.listen({ hostname: bound, port: 0 });
      } catch {
        continue; // no IPv6 here
      }
      const at = { hostname: bound, port: listener.addr.port };
      const client = await Deno.connect({ hostname: connectTo, port: at.port });
      const served = await listener.accept();
      const peer = served.remoteAddr;
      try {
        assert.equal(await clientState(at, peer), "connected", bound);
        // No such connection: gone (on a wildcard address, after a look at the whole port).
        const other = { ...peer, port: peer.port === 1 ? 2 : 1 };
        assert.equal(await clientState(at, other), "gone", bound);
        client.close();
        await waitUntil(async () => await clientState(at, peer) === "gone", `${bound}: the close`);
      } finally {
        served.close();
        listener.close();
      }
    }
  },
});

Deno.test({
  name: "on a wildcard address, a client on an address not tried is found, and one reset is gone",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const listener = Deno.listen({ hostname: "0.0.0.0", port: 0 });
    const at = { hostname: "0.0.0.0", port: listener.addr.port };
    try {
      // 127.0.0.2 is this host's too (all of 127.0.0.0/8), but no interface lists it.
      const client = await Deno.connect({ hostname: "127.0.0.2", port: at.port });
      const served = await listener.accept();
      assert.equal(await clientState(at, served.remoteAddr), "connected");
      // Shut down by the client: no longer established, as a TLS connection whose client left
      // is not once Deno has closed its side (while it may still hold the descriptor).
      const table = openSocketTable();
      assert.ok(typeof table !== "string", String(table));
      const mine = await table.list(new Set([client.localAddr.port]));
      assert.equal((await table.shut(new Set(mine.map((m) => m.inode)), { reset: true })).size, 1);
      await waitUntil(
        async () => await clientState(at, served.remoteAddr) === "gone",
        "the reset to be seen",
      );
      client.close();
      served.close();
    } finally {
      listener.close();
    }
  },
});

async function waitUntil(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500 && !(await condition()); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(await condition(), `waited for ${what}`);
}

Deno.test("peer addresses as Deno writes them match the socket table's form", () => {
  assert.equal(canonicalPeer("127.0.0.1|50000"), "127.0.0.1|50000");
  assert.equal(canonicalPeer("::ffff:127.0.0.1|50000"), "127.0.0.1|50000");
  assert.equal(canonicalPeer("::1|50001"), "0000:0000:0000:0000:0000:0000:0000:0001|50001");
  assert.equal(
    canonicalPeer("2001:db8::1|50002"),
    "2001:0db8:0000:0000:0000:0000:0000:0001|50002",
  );
  assert.equal(canonicalIp("fe80::1%eth0"), "fe80:0000:0000:0000:0000:0000:0000:0001");
  assert.equal(canonicalIp("[::]"), "0000:0000:0000:0000:0000:0000:0000:0000");
  for (const bad of ["", "1.2.3", "1.2.3.256", "1::2::3", "g::1", "1:2:3:4:5:6:7:8:9"]) {
    assert.equal(canonicalIp(bad), null, bad);
  }
  assert.equal(canonicalPeer("no-bar"), null);
});

Deno.test("connection activity: nothing without a reader; each reader sees what came after its last read", () => {
  const activity = new ConnectionActivity();
  assert.equal(activity.hold("a|1"), null);
  assert.equal(activity.recording, false);
  const one = activity.reader();
  assert.deepEqual(one.take(), [], "a hold before any reader is not recorded");
  const b = activity.hold("b|1");
  activity.release(activity.hold("c|1"));
  const two = activity.reader();
  assert.deepEqual(one.take().sort(), ["b|1", "c|1"]);
  assert.deepEqual(one.take(), ["b|1"], "b still holds; c was seen before the last read");
  assert.deepEqual(two.take().sort(), ["b|1", "c|1"], "the other reader still sees both");
  activity.release(b);
  assert.deepEqual(one.take(), ["b|1"], "seen at its release");
  assert.deepEqual(one.take(), []);
  // Two requests on one connection (HTTP/2): busy until both are over.
  const first = activity.hold("h2|1");
  const second = activity.hold("h2|1");
  one.take();
  activity.release(first);
  one.take();
  assert.deepEqual(one.take(), ["h2|1"]);
  activity.release(second);
  activity.release(second);
  one.take();
  assert.deepEqual(one.take(), [], "a double release does not go below zero");
  for (let i = 0; i < 20; i++) one.take();
  one.close();
  two.close();
  assert.equal(activity.recording, false);
  activity.hold("d|1");
  assert.deepEqual(activity.reader().take(), [], "closing the last reader forgot everything");
});

Deno.test({
  name: "tcpProgress() counts what the peer acknowledged, and what waits once it stops reading",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const server = await listener.accept();
    const ends = [client.localAddr, client.remoteAddr] as [Deno.NetAddr, Deno.NetAddr];
    try {
      const start = tcpProgress(...ends);
      assert.ok(start !== null);
      assert.equal(start.notSent, 0);
      await client.write(new Uint8Array(1000));
      const buf = new Uint8Array(4096);
      for (let got = 0; got < 1000;) got += (await server.read(buf))!;
      await waitFor(
        () => tcpProgress(...ends)!.acked === start.acked + 1000n,
        "the 1000 bytes acknowledged",
      );
      // The server reads no more: its buffers fill, bytes wait unsent, the count stands still.
      const writing = (async () => {
        for (let i = 0; i < 400; i++) await client.write(new Uint8Array(64 * 1024));
      })().catch(() => {});
      let last = -1n;
      await waitFor(() => {
        const now = tcpProgress(...ends)!;
        const still = now.acked === last && now.notSent > 0;
        last = now.acked;
        return still;
      }, "the count to stand still with bytes waiting");
      client.close();
      await writing;
    } finally {
      server.close();
      listener.close();
    }
  },
});
