/**
 * `deno task bench`: outpost side by side with vsftpd and pyftpdlib (FTP) and msmtp (mail), on loopback, one
 * program at a time, same clients and files; prints one table with absolute figures and outpost/peer ratios,
 * the issue 7 targets with PASS/MISS, and writes the same report to `.bench/results-<date>.md`.
 *
 * Peers are Debian packages: `apt-get install -y vsftpd python3-pyftpdlib msmtp python3-aiosmtpd curl lftp
 * openssl` (pyftpdlib and aiosmtpd must be importable by /usr/bin/python3). A missing peer is skipped with a
 * line saying so. Each peer runs with its own temporary config; every process is stopped by its PID and the
 * temporary folder is removed, also on Ctrl-C.
 *
 * This is not a test: nothing here asserts a time.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseSize } from "../src/config/section.ts";
import { runCommand, stopAllChildren, which } from "./bench/child.ts";
import {
  benchConcurrent,
  benchIdleRss,
  benchIdleSessions,
  benchLeak,
  benchRetr,
  benchSmallFiles,
  benchStor,
  type FtpRowOptions,
  makeBenchFiles,
} from "./bench/ftp_rows.ts";
import {
  type BenchFtpServer,
  FTP_SERVER_NAMES,
  missingFtpPeer,
  startFtpServer,
} from "./bench/ftp_servers.ts";
import { benchAlert, benchMail, missingMailPeer } from "./bench/mail_rows.ts";
import { machineInfo } from "./bench/proc_stats.ts";
import { checkTargets, renderReport, rowDefs } from "./bench/report.ts";
import { Results } from "./bench/results.ts";

/** Benchmark groups for `--only`, in run order. */
export const GROUPS = ["idle", "retr", "stor", "small", "concurrent", "leak", "mail", "alert"] as const;

const HELP = `Usage: deno task bench [-- options]

Runs outpost, vsftpd and pyftpdlib (FTP) and msmtp (mail) one after another on loopback and prints one
table with absolute figures, outpost/peer ratios and the issue 7 targets; also writes .bench/results-<date>.md.

Options:
  --only LIST          comma-separated groups (default: all): ${GROUPS.join(",")}
                         idle: rows 5 and 6 (idle RSS, ${"N"} idle sessions)   retr/stor: rows 1, 2, 7
                         small: row 3   concurrent: row 4   leak: row 6 (outpost, N sessions)
                         mail: rows 8, 9   alert: row 10 (+ idle RSS of outpost serve)
  --servers LIST       FTP servers (default: outpost,vsftpd,pyftpdlib)
  --size SIZE          RETR/STOR file size (default 1GiB)
  --runs N             runs per throughput row, median reported (default 3)
  --concurrent N       clients in row 4 (default 100)
  --idle-sessions N    sessions in row 5 (default 300)
  --leak-sessions N    sessions in row 6 (default 10000)
  --mails N            messages per variant in row 8 (default 200)
  --alert-trials N     threshold crossings in row 10 (default 5)
  --no-save            do not write .bench/results-<date>.md
  -h, --help           this help

Peers (Debian): apt-get install -y vsftpd python3-pyftpdlib msmtp python3-aiosmtpd curl lftp openssl`;

function positiveInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`--${name} must be a positive whole number, got "${v}".`);
  }
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args.filter((a) => a !== "--"),
    options: {
      only: { type: "string" },
      servers: { type: "string" },
      size: { type: "string", default: "1GiB" },
      runs: { type: "string", default: "3" },
      concurrent: { type: "string", default: "100" },
      "idle-sessions": { type: "string", default: "300" },
      "leak-sessions": { type: "string", default: "10000" },
      mails: { type: "string", default: "200" },
      "alert-trials": { type: "string", default: "5" },
      "no-save": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const only = new Set(values.only ? values.only.split(",").map((s) => s.trim()).filter(Boolean) : GROUPS);
  for (const g of only) {
    if (!(GROUPS as readonly string[]).includes(g)) {
      throw new Error(`--only: unknown group "${g}" (${GROUPS.join(",")}).`);
    }
  }
  const servers = values.servers ? values.servers.split(",").map((s) => s.trim()) : [...FTP_SERVER_NAMES];
  for (const s of servers) {
    if (!(FTP_SERVER_NAMES as readonly string[]).includes(s)) {
      throw new Error(`--servers: unknown server "${s}".`);
    }
  }
  const size = parseSize(values.size);
  if (size === null || size < 1024 * 1024) {
    throw new Error(`--size must be a size of at least 1MiB, got "${values.size}".`);
  }
  const runs = positiveInt(values.runs, "runs");
  const mails = positiveInt(values.mails, "mails");
  const sizeLabel = size % 1024 ** 3 === 0
    ? `${size / 1024 ** 3} GiB`
    : `${(size / 1024 ** 2).toFixed(0)} MiB`;

  const started = performance.now();
  const date = new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC";
  const machine = await machineInfo();
  const freeM = (await runCommand("free", ["-m"]).catch(() => ({ stdout: "" }))).stdout;
  const results = new Results();
  const log = (line: string) => console.log(line);
  log(`outpost bench ${date}: ${machine.cpus} CPUs, ${machine.cpuModel}, load ${machine.loadavg}`);

  const tmp = await Deno.makeTempDir({ prefix: "outpost-bench-" });
  const onSignal = () => {
    console.error("bench: interrupted; stopping children and removing temporary files.");
    stopAllChildren().finally(() => Deno.remove(tmp, { recursive: true }).catch(() => {})).finally(() =>
      Deno.exit(130)
    );
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    await Deno.chmod(tmp, 0o755);
    const ftpGroups = ["idle", "retr", "stor", "small", "concurrent", "leak"].filter((g) => only.has(g));
    if (ftpGroups.length > 0) {
      const missingClients = [];
      if (!(await which("curl"))) missingClients.push("curl (apt-get install curl)");
      if (only.has("small") && !(await which("lftp"))) missingClients.push("lftp (apt-get install lftp)");
      if (missingClients.length) throw new Error(`The FTP rows need ${missingClients.join(" and ")}.`);
      log(`Creating the files (${sizeLabel}, 8 MiB, 2,000 × 4 KiB) ...`);
      const files = await makeBenchFiles(`${tmp}/root`, size);
      const opts: FtpRowOptions = {
        runs,
        concurrent: positiveInt(values.concurrent, "concurrent"),
        idleSessions: positiveInt(values["idle-sessions"], "idle-sessions"),
        leakSessions: positiveInt(values["leak-sessions"], "leak-sessions"),
        scratch: tmp,
        log,
      };
      for (const name of servers as typeof FTP_SERVER_NAMES[number][]) {
        const missing = await missingFtpPeer(name);
        if (missing) {
          log(`SKIP ${name}: ${missing}`);
          results.skipped.push(`${name}: ${missing}`);
          continue;
        }
        log(`${name}:`);
        let server: BenchFtpServer | null = null;
        try {
          server = await startFtpServer(name, files.root, tmp);
          if (only.has("idle")) {
            await benchIdleRss(server, results);
            await benchIdleSessions(server, opts, results);
          }
          if (only.has("retr")) await benchRetr(server, files, opts, results);
          if (only.has("stor")) await benchStor(server, files, opts, results);
          if (only.has("small")) await benchSmallFiles(server, files, opts, results);
          if (only.has("concurrent")) await benchConcurrent(server, files, opts, results);
        } catch (e) {
          log(`  FAILED: ${(e as Error).message}`);
          results.skipped.push(`${name}: failed: ${(e as Error).message}`);
        } finally {
          await server?.stop();
        }
      }
      // The leak check (10,000 sessions, each with data connections) runs last, on a fresh outpost server, so the
      // sockets it leaves in TIME_WAIT cannot starve the other servers' rows of ports.
      if (only.has("leak") && servers.includes("outpost")) {
        log("outpost (leak check):");
        let server: BenchFtpServer | null = null;
        try {
          server = await startFtpServer("outpost", files.root, tmp);
          await benchLeak(server, opts, results);
        } catch (e) {
          log(`  FAILED: ${(e as Error).message}`);
          results.skipped.push(`outpost leak check: failed: ${(e as Error).message}`);
        } finally {
          await server?.stop();
        }
      }
      await Deno.remove(files.root, { recursive: true });
    }
    if (only.has("mail") || only.has("alert")) {
      const missing = await missingMailPeer();
      if (missing) {
        log(`SKIP mail and alert rows: ${missing}`);
        results.skipped.push(missing);
      } else {
        const mopts = {
          tmp,
          mails,
          invocations: 10,
          alertTrials: positiveInt(values["alert-trials"], "alert-trials"),
          alertIntervalMs: 1000,
          log,
        };
        if (only.has("mail")) {
          log("mail:");
          try {
            await benchMail(mopts, results);
          } catch (e) {
            log(`  FAILED: ${(e as Error).message}`);
            results.skipped.push(`mail rows failed: ${(e as Error).message}`);
          }
        }
        if (only.has("alert")) {
          log("alert:");
          try {
            await benchAlert(mopts, results);
          } catch (e) {
            log(`  FAILED: ${(e as Error).message}`);
            results.skipped.push(`alert row failed: ${(e as Error).message}`);
          }
        }
      }
    }
  } finally {
    await stopAllChildren();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }

  const rows = rowDefs({
    size: sizeLabel,
    concurrent: Number(values.concurrent),
    idle: Number(values["idle-sessions"]),
    leak: Number(values["leak-sessions"]),
    mails,
  });
  results.notes.push(
    "outpost ran as its own `deno run` of scripts/bench/outpost_ftp_server.ts (FtpServer with the default " +
      "options except 1000 sessions in total and per address and passive ports 20000-20999; logging off; " +
      "`--v8-flags=--expose-gc,--trace-gc` to count GCs) with the board unit's memory settings " +
      "(`MALLOC_ARENA_MAX=2`, `--max-semi-space-size=1`); its user's hash has 1000 PBKDF2 iterations so logins " +
      "do not dominate. Uploads are fsynced before the rename (`sync_uploads = true`, the default); vsftpd and " +
      "pyftpdlib do not sync.",
    "vsftpd: anonymous user (ftp_username=daemon, privilege separation on), no xferlog; pyftpdlib: async " +
      "FTPServer (sendfile) with logging at WARNING.",
    "Server CPU: utime+stime+cutime+cstime over the server's process tree from /proc/PID/stat, sampled every " +
      "100 ms so vsftpd's per-session processes are included.",
    "Row 4 peak memory: VmHWM of the one server process after resetting it (clear_refs 5); for vsftpd the peak " +
      "of the summed PSS of its processes, sampled every 100 ms. Row 5 per session: RSS delta for one-process " +
      "servers, PSS delta for vsftpd.",
  );
  const targets = checkTargets(results, { alertIntervalMs: 1000 });
  const command = `deno task bench${
    Deno.args.length ? " -- " + Deno.args.filter((a) => a !== "--").join(" ") : ""
  }`;
  const report = renderReport({
    date,
    command,
    machine,
    freeM,
    seconds: (performance.now() - started) / 1000,
    rows,
    results,
    targets,
  });
  console.log("\n" + report);
  if (!values["no-save"]) {
    const dir = new URL("../.bench/", import.meta.url).pathname;
    await Deno.mkdir(dir, { recursive: true });
    const file = `${dir}results-${date.slice(0, 19).replace(/[: ]/g, "-")}.md`;
    await Deno.writeTextFile(file, report);
    console.log(`Saved to ${file}`);
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    await stopAllChildren();
    Deno.exit(1);
  }
}
