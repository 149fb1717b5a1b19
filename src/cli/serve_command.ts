/**
 * `outpost serve`: the daemon. FTP server, outbox worker and alert monitor in one process, for systemd.
 *
 * - SIGTERM/SIGINT drain (stop accepting, give transfers a deadline, flush alert state) and exit 0.
 * - SIGHUP re-reads the config; a bad new file is logged and the running config stays.
 * - A bad config at start falls back to the last good copy (`<state_dir>/last-good.toml`), so a typo made on the
 *   boot partition does not take the board off the network; with no good copy it exits 78 (EX_CONFIG).
 * - `READY=1` and watchdog pings go to systemd (`Type=notify`).
 * - A marker file notices an unclean stop (crash, power cut) and mails the alert recipients once restarted.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hashPassword } from "../config/password.ts";
import {
  configSandboxNeeds,
  findConfigPath,
  type OutpostConfig,
  parseConfig,
  parseTomlDocument,
} from "../app/outpost_config.ts";
import { ConfigError } from "../config/section.ts";
import { queueFallbackConfigNotice } from "../alerts/outbox_mailer.ts";
import { OutpostDaemon } from "../daemon/outpost_daemon.ts";
import { SystemdNotifier } from "../daemon/systemd_notify.ts";
import { EXIT_SANDBOX_CHANGED, restartableBySystemd, sandboxShortfall } from "../daemon/systemd_sandbox.ts";
import { Logger } from "../log/logger.ts";
import { loginHint } from "./lan_addresses.ts";

const log = new Logger("serve");

const HELP = `Usage: outpost serve [--config FILE] [--quick-start [--port N] [--root DIR]]

Runs the FTP server, the mail outbox worker and the alert monitor from one config file (default:
$OUTPOST_CONFIG, /boot/firmware/outpost.toml, /boot/outpost.toml, /etc/outpost/outpost.toml).

  --config, -C FILE   the config file
  --quick-start       no config file: serve ./outpost-data over FTP on port 2121 for user "outpost" with a
                      fresh random password (printed), state in ./.outpost-state
  --port N            with --quick-start: the port (default 2121)
  --root DIR          with --quick-start: the folder (default ./outpost-data)
  --grace SECONDS     how long running transfers may finish on SIGTERM (default 10)

Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the config (a bad file keeps the old one).`;

/** Name of the copy of the last config that started successfully, in the state folder. */
export const LAST_GOOD_NAME = "last-good.toml";

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    const data = new TextEncoder().encode(text);
    let off = 0;
    while (off < data.length) off += await f.write(data.subarray(off));
    await f.syncData();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
}

/** Where the state folder is for a config text that may be invalid: its `[device] state_dir` if readable. */
function stateDirOf(text: string | null, path: string | null): string {
  try {
    if (text !== null) {
      const doc = parseTomlDocument(text);
      const dev = doc.device as Record<string, unknown> | undefined;
      const sd = dev?.state_dir;
      if (typeof sd === "string") {
        if (sd.startsWith("/")) return sd;
        const base = path && path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : Deno.cwd();
        return `${base}/${sd}`;
      }
    }
  } catch {
    // Unreadable TOML: use the default below.
  }
  return "/var/lib/outpost";
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return null;
  }
}

interface Loaded {
  config: OutpostConfig;
  text: string;
  fromLastGood: boolean;
  /** With `fromLastGood`: the refused file's problems and its text (null when it could not be read). */
  refused?: { problems: string[]; text: string | null; lastGood: string };
}

/**
 * Loads the config at `path`, falling back to the last good copy when it is missing or invalid.
 *
 * @example
 * ```ts
 * const { config, fromLastGood } = await loadWithFallback("/boot/firmware/outpost.toml");
 * ```
 */
export async function loadWithFallback(path: string | null): Promise<Loaded> {
  const text = path ? await readText(path) : null;
  let problem: ConfigError;
  if (path && text !== null) {
    try {
      return { config: parseConfig(text, absolute(path)), text, fromLastGood: false };
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problem = e;
    }
  } else {
    problem = new ConfigError([path ? `${path}: cannot be read` : "no config file found"]);
  }
  for (const line of problem.problems) log.error("config.invalid", { problem: line });
  const lastGood = `${stateDirOf(text, path)}/${LAST_GOOD_NAME}`;
  const goodText = await readText(lastGood);
  if (goodText === null) throw problem;
  const config = parseConfig(goodText, absolute(path ?? lastGood));
  log.warn("config.fallback", {
    using: lastGood,
    note: "fix the config file; the last good one runs meanwhile",
  });
  return {
    config,
    text: goodText,
    fromLastGood: true,
    refused: { problems: problem.problems, text, lastGood },
  };
}

function absolute(p: string): string {
  return p.startsWith("/") ? p : `${Deno.cwd()}/${p}`;
}

async function rememberGood(cfg: OutpostConfig, text: string): Promise<void> {
  const dest = `${cfg.device.stateDir}/${LAST_GOOD_NAME}`;
  if ((await readText(dest)) === text) return;
  try {
    await writeAtomic(dest, text);
  } catch (e) {
    log.warn("config.save_failed", { file: dest, reason: (e as Error).message });
  }
}

async function quickStartConfig(root: string, port: number): Promise<{ text: string; password: string }> {
  const password = Array.from(
    crypto.getRandomValues(new Uint8Array(9)),
    (b) => b.toString(36).padStart(2, "0"),
  )
    .join("").slice(0, 12);
  const hash = await hashPassword(password, 50_000);
  await Deno.mkdir(root, { recursive: true });
  const text = `# Embedded quick-start config (outpost serve --quick-start).
[device]
state_dir = ".outpost-state"

[ftp]
host = "0.0.0.0"
port = ${port}

[[ftp.users]]
name = "outpost"
password_hash = "${hash}"
root = ${JSON.stringify(root)}
permissions = ["all"]
`;
  return { text, password };
}

/**
 * Runs `outpost serve`.
 *
 * @example
 * ```ts
 * const status = await serveCommand(["--config", "/boot/firmware/outpost.toml"]);
 * ```
 */
export async function serveCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "C" },
        "quick-start": { type: "boolean" },
        port: { type: "string", default: "2121" },
        root: { type: "string", default: "outpost-data" },
        grace: { type: "string", default: "10" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`outpost serve: ${(e as Error).message}\n\n${HELP}`);
    return 64;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const graceMs = Math.max(0, Number(values.grace) * 1000 || 0);
  let path: string | null = null;
  let loaded: Loaded;
  let password: string | null = null;
  try {
    if (values["quick-start"]) {
      const port = Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        console.error(`outpost serve: --port must be 0-65535, got "${values.port}".`);
        return 64;
      }
      const qs = await quickStartConfig(absolute(values.root!), port);
      password = qs.password;
      loaded = { config: parseConfig(qs.text), text: qs.text, fromLastGood: false };
    } else {
      path = await findConfigPath(values.config);
      loaded = await loadWithFallback(path);
    }
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(e.message);
    return 78;
  }

  const stateDir = loaded.config.device.stateDir;
  await Deno.mkdir(stateDir, { recursive: true });
  const marker = `${stateDir}/running`;
  const crashed = (await readText(marker)) !== null;

  let daemon: OutpostDaemon;
  try {
    daemon = await OutpostDaemon.start(loaded.config);
  } catch (e) {
    log.error("start.failed", { reason: (e as Error).message });
    console.error(`outpost serve: could not start: ${(e as Error).message}`);
    return 1;
  }
  daemon.fromLastGood = loaded.fromLastGood;
  await writeAtomic(marker, `${Deno.pid}\n`);
  if (!loaded.fromLastGood && path) await rememberGood(loaded.config, loaded.text);
  for (const line of loginHint(loaded.config, password, daemon.ftp?.port ?? 0)) console.log(line);

  const notifier = SystemdNotifier.fromEnv();
  await notifier.send("READY=1\nSTATUS=serving");
  notifier.startWatchdog(() => daemon.healthy());
  if (loaded.refused && path && daemon.outbox) {
    // Someone without a screen learns by mail that their edit was refused, once per refused file.
    await queueFallbackConfigNotice(daemon.outbox, {
      to: loaded.config.alerts.to,
      stateDir,
      fileText: loaded.refused.text ?? "",
      input: {
        host: loaded.config.device.name,
        board: loaded.config.device.board,
        file: path,
        problems: loaded.refused.problems,
        runningFrom: `the last good copy (${loaded.refused.lastGood})`,
        at: Date.now(),
      },
    }).catch((e) => log.warn("config.fallback_notice_failed", { reason: (e as Error).message }));
    daemon.worker?.kick();
  }
  if (crashed) {
    await daemon.notify(
      "restarted after an unclean stop",
      "outpost was not stopped cleanly (crash or power loss) " +
        `and has restarted at ${new Date().toISOString()}.`,
    );
  } else if (loaded.config.device.mailOnStart) {
    await daemon.notify("started", `outpost started at ${new Date().toISOString()}.`);
  }

  let exitStatus = 0;
  let reloading = Promise.resolve();
  const reload = () => {
    reloading = reloading.then(async () => {
      await notifier.send("RELOADING=1");
      const text = path ? await readText(path) : null;
      try {
        if (!path || text === null) throw new ConfigError([`${path ?? "config"}: cannot be read`]);
        const next = parseConfig(text, absolute(path));
        const missing = sandboxShortfall(configSandboxNeeds(next));
        if (missing.length > 0) {
          if (!restartableBySystemd()) {
            throw new ConfigError([
              `the new config needs what this process was not started with (${missing.join(", ")}); ` +
              `restart outpost to apply it`,
            ]);
          }
          // The flags and the unit's ReadWritePaths are derived before start: let systemd start us again through
          // the prepare step (exit 75, RestartForceExitStatus=75) rather than report a reload that cannot work.
          log.warn("reload.restart_for_sandbox", { needs: missing.join(", ") });
          exitStatus = EXIT_SANDBOX_CHANGED;
          stop();
          return;
        }
        await daemon.reload(next);
        await rememberGood(next, text);
      } catch (e) {
        const problems = e instanceof ConfigError ? e.problems : [(e as Error).message];
        for (const p of problems) log.error("reload.refused", { problem: p });
        log.warn("reload.kept_old_config");
      }
      await notifier.send("READY=1");
    });
  };

  const stopped = Promise.withResolvers<void>();
  const stop = () => stopped.resolve();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGHUP", reload);
  await stopped.promise;
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGHUP", reload);

  await notifier.send("STOPPING=1");
  notifier.stop();
  await reloading;
  await daemon.stop(graceMs);
  await Deno.remove(marker).catch(() => {});
  return exitStatus;
}
