// The listeners of a running Strom: the HTTP proxy, the HTTPS proxy and the
// admin listener, bound from a config and rebound when a reload changes their
// address (the new one starts, then the old one drains) or the certificates
// change (a new HTTPS listener next to the old one, see lib/tls/listener.ts).
// With workers, each HTTPS (re)bind is passed on so they listen next to it.

import type { Config } from "./config/types.ts";
import type { Problem } from "./config/errors.ts";
import type { Logger } from "./log.ts";
import type { Runtime } from "./runtime.ts";
import type { SocketAddress } from "./net/address.ts";
import {
  assertUnbound,
  type Handler,
  listen,
  listenHttpsProxy,
  listenProxy,
  type ProxyListenOptions,
} from "./listen.ts";
import type { CertificateStore } from "./tls/store.ts";
import type { ChallengeStore } from "./tls/challenges.ts";
import type { HttpListener } from "./net/http_listener.ts";

type Role = "http_address" | "https_address" | "admin_address";

interface Bound {
  readonly role: Role;
  /** The configured address, with the bound port (so port 0 rebinds the same port). */
  readonly address: SocketAddress;
  /** The address as configured (port 0 stays 0): what a reload compares with. */
  readonly requested: SocketAddress;
  readonly server: HttpListener;
}

/** What the listeners serve. */
export interface ListenerDeps {
  readonly log: Logger;
  readonly runtime: () => Runtime;
  /** Metrics, access log and WebSockets of the proxy listeners. */
  readonly proxy: Omit<ProxyListenOptions, "log" | "challenges">;
  readonly certificates: CertificateStore;
  readonly challenges: ChallengeStore;
  readonly admin: Handler;
  /** True when workers serve the HTTP port instead of this isolate. */
  readonly workers: () => boolean;
  /** HTTPS now listens on `address` (bound port) with the store's certificates; null: stopped. */
  readonly onHttps?: (address: SocketAddress | null) => void;
}

/** Whether two addresses differ (as configured: port 0 is not the port it bound). */
function changed(a: SocketAddress, b: SocketAddress): boolean {
  return a.hostname !== b.hostname || a.port !== b.port;
}

/** The listeners this isolate binds. */
export class Listeners {
  readonly #deps: ListenerDeps;
  #bound: Bound[] = [];
  /** Listeners replaced by a reload, still finishing their requests (shutdown waits for them). */
  #retired: Bound[] = [];
  #certificatesServed = -1;
  #closed = false;
  /** With workers: the http_address they were started on, as configured (port 0 stays 0). */
  #workersHttp: SocketAddress | null = null;

  constructor(deps: ListenerDeps) {
    this.#deps = deps;
  }

  /** Binds what `config` asks for (the HTTP port only without workers). Throws ListenError. */
  bindAll(config: Config): void {
    if (this.#deps.workers()) this.#workersHttp = config.httpAddress;
    else this.#bindProxy(config.httpAddress);
    if (config.certificates.length > 0) {
      assertUnbound("https_address", config.httpsAddress);
      this.#bindHttps(config.httpsAddress);
    }
    this.#bind(
      "admin_address",
      config.adminAddress,
      () => listen("admin_address", config.adminAddress, this.#deps.admin, { log: this.#deps.log }),
    );
  }

  /** The bound port of a role, or undefined. */
  port(role: Role): number | undefined {
    return this.address(role)?.port;
  }

  /** The bound address of a role (after a failed rebind, the old one's), or undefined. */
  address(role: Role): Deno.NetAddr | undefined {
    return this.#bound.find((b) => b.role === role)?.server.addr;
  }

  /** The ports of every listener still serving (retired HTTPS ones too). */
  ports(): number[] {
    return [...this.#bound, ...this.#retired].map((b) => b.server.addr.port);
  }

  /** The bound listeners. */
  list(): { role: string; addr: Deno.NetAddr }[] {
    return this.#bound.map((b) => ({ role: b.role, addr: b.server.addr }));
  }

  /**
   * With workers, http_address as `after` has it when that is not where the workers
   * listen: they keep the address they started on until a restart. Compared with
   * what they were started on, not with the previous config, so every reload of
   * such a config says so, and going back to that address is no change at all.
   */
  restartRequired(after: Config): Problem[] {
    const started = this.#workersHttp;
    if (started === null || !changed(started, after.httpAddress)) return [];
    return [{
      path: "http_address",
      message: `a restart is required for ${after.httpAddress.text} with workers ` +
        "(they keep the address they started on)",
    }];
  }

  /**
   * Rebinds what a reload changed (with workers, not http_address: see
   * restartRequired). Addresses are compared with what is bound, not with the
   * previous config: after a rebind that failed (the old listener kept), going
   * back to the old address is then no change at all. Returns what could not
   * be bound, each with the old listener it kept.
   */
  rebind(after: Config): Problem[] {
    const failed: Problem[] = [];
    const replace = (role: Role, bind: () => void) => {
      const problem = this.#replace(role, bind);
      if (problem) failed.push(problem);
    };
    const differs = (role: Role, wanted: SocketAddress) => {
      const bound = this.#bound.find((b) => b.role === role);
      return bound === undefined || changed(bound.requested, wanted);
    };
    // The workers bind http_address themselves, once (restartRequired reports it).
    if (!this.#deps.workers() && differs("http_address", after.httpAddress)) {
      replace("http_address", () => this.#bindProxy(after.httpAddress));
    }
    if (differs("admin_address", after.adminAddress)) {
      replace(
        "admin_address",
        () =>
          this.#bind(
            "admin_address",
            after.adminAddress,
            () =>
              listen("admin_address", after.adminAddress, this.#deps.admin, {
                log: this.#deps.log,
              }),
          ),
      );
    }
    const httpsBefore = this.#bound.some((b) => b.role === "https_address");
    const httpsAfter = after.certificates.length > 0;
    if (httpsAfter && differs("https_address", after.httpsAddress)) {
      const problem = this.#replace("https_address", () => {
        // Not a port this isolate holds already (that one is shared on purpose, see listener.ts).
        if (this.port("https_address") !== after.httpsAddress.port) {
          assertUnbound("https_address", after.httpsAddress);
        }
        this.#bindHttps(after.httpsAddress);
      });
      if (problem) {
        failed.push(problem);
        // The old listener stays: it serves the reload's certificates all the same.
        this.refreshCertificates();
      }
    } else if (httpsAfter) {
      this.refreshCertificates();
    } else if (httpsBefore) {
      const old = this.#bound.find((b) => b.role === "https_address");
      if (old) {
        this.#bound = this.#bound.filter((b) => b !== old);
        this.#retire(old);
        this.#deps.onHttps?.(null);
      }
    }
    return failed;
  }

  /** Serves the store's current certificates: a new HTTPS listener when they changed. */
  refreshCertificates(): void {
    const https = this.#bound.find((b) => b.role === "https_address");
    if (!https || this.#closed || this.#certificatesServed === this.#deps.certificates.version) {
      return;
    }
    this.#replace("https_address", () => this.#bindHttps(https.address, https.requested));
  }

  /** Stops accepting everywhere and waits until requests in flight finished. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#bound, ...this.#retired].map((b) => b.server.shutdown()));
  }

  #bindProxy(address: SocketAddress): void {
    this.#bind(
      "http_address",
      address,
      () =>
        listenProxy("HTTP", "http_address", address, this.#deps.runtime, {
          ...this.#deps.proxy,
          log: this.#deps.log,
          challenges: this.#deps.challenges,
        }),
    );
  }

  #bindHttps(address: SocketAddress, requested = address): void {
    this.#bind(
      "https_address",
      address,
      () =>
        listenHttpsProxy(address, this.#deps.certificates, this.#deps.runtime, {
          ...this.#deps.proxy,
          log: this.#deps.log,
        }),
      requested,
    );
    this.#certificatesServed = this.#deps.certificates.version;
    this.#deps.certificates.listenerBound();
    this.#deps.onHttps?.(this.#bound.find((b) => b.role === "https_address")!.address);
  }

  #bind(
    role: Role,
    address: SocketAddress,
    start: () => HttpListener,
    requested = address,
  ): void {
    const server = start();
    this.#bound.push({
      role,
      address: { ...address, port: server.addr.port },
      requested,
      server,
    });
  }

  /** Stops `old` accepting; it stays in #retired until its requests in flight finished. */
  #retire(old: Bound): void {
    this.#retired.push(old);
    void old.server.shutdown().then(() => {
      this.#retired = this.#retired.filter((b) => b !== old);
    });
  }

  /** Binds anew for `role`, then retires the old listener; on failure keeps it and says why. */
  #replace(role: Role, bind: () => void): Problem | null {
    const old = this.#bound.find((b) => b.role === role);
    try {
      if (this.#closed) throw new Error("shutting down");
      if (old) this.#bound = this.#bound.filter((b) => b !== old);
      bind();
      // The old listener finishes its requests; shutdown waits for them.
      if (old) this.#retire(old);
      return null;
    } catch (e) {
      if (old) this.#bound.push(old);
      const kept = old ? `${old.address.hostname}:${old.address.port}` : "none";
      this.#deps.log.error(`Keeping the old ${role}: ${(e as Error).message}`);
      return { path: role, message: `${(e as Error).message}; still listening on ${kept}` };
    }
  }
}
