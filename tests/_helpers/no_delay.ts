// Hooks into `setNoDelay` of every TCP connection of this process: the method
// lives on the class's prototype, which Deno does not export.

/** Calls `hook` inside every `setNoDelay` of this process's TCP connections until disposed. */
export async function onNoDelay(hook: () => void): Promise<Disposable> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sample = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const proto = Object.getPrototypeOf(sample) as Deno.TcpConn;
  sample.close();
  (await listener.accept()).close();
  listener.close();
  const original = proto.setNoDelay;
  proto.setNoDelay = function (this: Deno.TcpConn, noDelay?: boolean) {
    hook();
    return original.call(this, noDelay);
  };
  return { [Symbol.dispose]: () => proto.setNoDelay = original };
}
