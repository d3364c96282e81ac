// Strom's command line: parse arguments, run a command, map outcomes to exit
// codes (0 ok, 1 config or listener error, 2 usage error).

import { type Command, parseCli, USAGE, UsageError } from "./lib/cli.ts";
import { createLogger, type Level, type Logger, stdoutSink } from "./lib/log.ts";
import { LogRing } from "./lib/log_ring.ts";
import { watchConfig } from "./lib/config/watch.ts";
import { isBlankConfig, loadConfigFile } from "./lib/config/load.ts";
import { ConfigError } from "./lib/config/errors.ts";
import { summarizeConfig } from "./lib/config/summary.ts";
import { LINEAR_ENGINE_CHECKS } from "./lib/config/matcher.ts";
import { ListenError, Strom } from "./lib/server.ts";
import { demoBanner, demoConfig, startDemoBackends } from "./lib/demo.ts";
import { COMMIT, VERSION } from "./lib/version.ts";

async function main(args: string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCli(args, { LOG_LEVEL: Deno.env.get("LOG_LEVEL") });
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`strom: ${e.message}\nRun "strom --help" for usage.`);
    return 2;
  }
  switch (command.kind) {
    case "help":
      console.log(USAGE);
      return 0;
    case "version":
      console.log(`strom ${VERSION} (${COMMIT})`);
      return 0;
    case "run":
      return await run(command);
    case "demo":
      return await demo(command);
  }
}

/** A logger that prints and keeps the last lines for the admin API. */
function logging(level: Level): { log: Logger; logRing: LogRing } {
  const logRing = new LogRing();
  const log = createLogger(level, {
    sink: (record) => {
      logRing.push(record);
      stdoutSink(record);
    },
  });
  return { log, logRing };
}

async function run(command: Extract<Command, { kind: "run" }>): Promise<number> {
  const { log, logRing } = logging(command.logLevel);
  // SIGHUP's default action ends the process: listened to before anything slow, so that a
  // `systemctl reload` (or logrotate) just after a start does not stop the balancer. One that
  // comes while Strom starts reloads once it has.
  let strom: Strom | null = null;
  let hupWhileStarting = false;
  const onHup = () => {
    if (strom === null) return void (hupWhileStarting = true);
    log.info("Received SIGHUP: reopening the access log and reloading the configuration");
    const running = strom;
    void running.reopenLogs().then(() => running.reload());
  };
  if (!command.check) Deno.addSignalListener("SIGHUP", onHup);
  try {
    const loaded = await loadConfigFile(command.configPath);
    if (command.check) {
      if (!LINEAR_ENGINE_CHECKS) console.error(`strom: note: ${WITHOUT_FLAGS}`);
      console.log(summarizeConfig(loaded.config));
      // Strom starts with it, but a reload to it is refused: a deploy that checks before it
      // reloads must hear that.
      if (isBlankConfig(loaded.text)) console.log(`  warning: ${BLANK_CHECK_WARNING}`);
      return 0;
    }
    log.info(`Logging level: ${command.logLevel.toUpperCase()}`);
    if (!LINEAR_ENGINE_CHECKS) log.warn(WITHOUT_FLAGS);
    strom = await Strom.start(loaded.config, {
      log,
      logLevel: command.logLevel,
      logRing,
      configSource: loaded,
    });
    const started = strom;
    const stopWatching = watchConfig(command.configPath, {
      currentText: () => started.configText,
      // Taken: applied, or already running by its turn. Applied with a listener kept on its
      // old address is not taken: saving the same text again retries the move.
      onChange: (text) =>
        started.reloadIfChanged(text).then((result) =>
          result === null || (result.ok && result.kept === undefined)
        ),
      onInvalid: (problem) => void started.refuse([problem]),
      onError: (e) => log.warn(`Stopped watching the config file: ${e}`),
    });
    if (hupWhileStarting) onHup();
    const code = await untilSignal(started, log, command.graceMs);
    stopWatching();
    return code;
  } catch (e) {
    return reportFatal(e);
  }
}

const BLANK_CHECK_WARNING = "the file is empty (only blank lines and comments): Strom starts " +
  "with it, with no pool, but a reload to it is refused (the running config is kept)";

/**
 * Said when V8 runs without Strom's flags (`deno run main.ts` by hand): then no
 * regex match that backtracks too much is finished in linear time, and no
 * pattern that would need that is refused at load.
 */
const WITHOUT_FLAGS = "V8 runs without Strom's flags (--v8-flags=..." +
  "--enable-experimental-regexp-engine...): a regex matcher that backtracks could stall every " +
  "request, and the config check cannot refuse such patterns; start Strom with `make start`, " +
  "`deno task start` or the compiled binary";

async function demo(command: Extract<Command, { kind: "demo" }>): Promise<number> {
  const { log, logRing } = logging(command.logLevel);
  // Its default action would end the demo.
  Deno.addSignalListener(
    "SIGHUP",
    () => log.info("Received SIGHUP: the demo has nothing to reload"),
  );
  if (!LINEAR_ENGINE_CHECKS) log.warn(WITHOUT_FLAGS);
  let backends;
  try {
    backends = startDemoBackends(command.backendPort);
  } catch (e) {
    console.error(`strom: Cannot start demo backends on port ${command.backendPort}: ${e}`);
    return 1;
  }
  try {
    const ports = backends.map((b) => b.port);
    const config = demoConfig({
      http: command.httpPort,
      admin: command.adminPort,
      backends: ports,
    });
    const strom = await Strom.start(config, { log, logLevel: command.logLevel, logRing });
    console.log(demoBanner(strom.port("http_address"), strom.port("admin_address"), ports));
    const code = await untilSignal(strom, log, command.graceMs);
    await Promise.all(backends.map((b) => b.server.shutdown()));
    return code;
  } catch (e) {
    await Promise.all(backends.map((b) => b.server.shutdown()));
    return reportFatal(e);
  }
}

/** Waits for SIGINT or SIGTERM, then drains in-flight requests and returns 0. */
function untilSignal(strom: Strom, log: Logger, graceMs: number): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: Deno.Signal) => {
      if (stopping) {
        // A second signal (Ctrl-C again) is an operator who will not wait: stop now, exit 1.
        log.warn(`Received ${signal} again: stopping now, cutting off requests in flight`);
        resolve(1);
        return;
      }
      stopping = true;
      log.info(`Received ${signal}, finishing in-flight requests (up to ${graceMs} ms)`);
      strom.shutdown(graceMs).then(() => resolve(0));
    };
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => stop(signal));
    }
  });
}

function reportFatal(e: unknown): number {
  if (e instanceof ConfigError || e instanceof ListenError) {
    console.error(e.message);
    return 1;
  }
  // Anything else that stops the start (an access log that cannot be opened, ...) is a failure
  // too: exit 1, so a supervisor (systemd's Restart=on-failure) sees it.
  console.error(`strom: cannot start: ${e instanceof Error ? e.message : String(e)}`);
  return 1;
}

if (import.meta.main) {
  // Never die of a stray rejected promise: log it and keep serving.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    console.error(
      `${new Date().toISOString()} ERROR An unexpected error was not handled: ${event.reason}`,
    );
  });
  Deno.exit(await main(Deno.args));
}
