/**
 * Mail and alert rows 8 to 10: outpost's SMTP client and `outpost sendmail` against msmtp, to the same local
 * discarding aiosmtpd sink (plain and STARTTLS), and the alert latency of `outpost serve`.
 *
 * @module
 */

import { hashPassword } from "../../src/config/password.ts";
import { BenchChild, runCommand, which } from "./child.ts";
import { SYSTEM_PYTHON } from "./ftp_servers.ts";
import { loadAverage, treeMemory } from "./proc_stats.ts";
import { median, type Results } from "./results.ts";

const HERE = new URL(".", import.meta.url).pathname;
const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const RCPT = "sink@example.com";
const FROM = "bench@example.com";

/** Tunables of the mail rows. */
export interface MailRowOptions {
  tmp: string;
  mails: number;
  /** Single `sendmail` invocations timed for row 9. */
  invocations: number;
  alertTrials: number;
  alertIntervalMs: number;
  log: (line: string) => void;
}

/** A running sink. */
interface Sink {
  port: number;
  child: BenchChild;
  /** Receipt times (Unix ms) and subjects, in order. */
  received: { at: number; subject: string }[];
}

async function startSink(tls: { cert: string; key: string } | null): Promise<Sink> {
  const received: { at: number; subject: string }[] = [];
  const child = BenchChild.spawn(SYSTEM_PYTHON, {
    args: [`${HERE}smtp_sink.py`, ...(tls ? [tls.cert, tls.key] : [])],
    stdin: true,
    onLine: (line) => {
      const m = /^MSG (\S+) ?(.*)$/.exec(line);
      if (m) received.push({ at: Number(m[1]), subject: m[2] });
    },
  });
  const port = Number((await child.waitLine(/^PORT (\d+)/))[1]);
  return { port, child, received };
}

/** Why the mail rows cannot run (with the install hint), or null. */
export async function missingMailPeer(): Promise<string | null> {
  const ok = await new Deno.Command(SYSTEM_PYTHON, { args: ["-c", "import aiosmtpd"], stderr: "null" })
    .output().then((o) => o.success, () => false);
  if (!ok) return "aiosmtpd is not installed (apt-get install python3-aiosmtpd): no SMTP sink for rows 8-10";
  if (!(await which("openssl"))) return "openssl is not installed (apt-get install openssl)";
  return null;
}

async function makeCert(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const run = async (args: string[]) => {
    const r = await runCommand("openssl", args, { cwd: dir });
    if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim()}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
  );
  await run([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=bench CA",
  ]);
  await run(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
  await run([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/server.pem`, key: `${dir}/server.key` };
}

function smtpToml(port: number, tlsCa: string | null, stateDir: string): string {
  return [
    "[device]",
    'name = "bench"',
    `state_dir = "${stateDir}"`,
    "",
    "[smtp]",
    'host = "127.0.0.1"',
    `port = ${port}`,
    tlsCa ? 'security = "starttls"' : 'security = "none"',
    ...(tlsCa ? [`ca_file = "${tlsCa}"`, 'tls_servername = "localhost"'] : []),
    `from = "${FROM}"`,
    "",
  ].join("\n");
}

/** Bundles the CLI as the board runs it (`deno bundle`); null when bundling fails (then the source runs). */
async function bundleCli(dir: string): Promise<string | null> {
  try {
    const { bundleOutpost } = await import("../bundle_outpost.ts");
    await bundleOutpost(`${dir}/outpost.js`);
    return `${dir}/outpost.js`;
  } catch {
    return null;
  }
}

interface Timed {
  ms: number;
  rss: number;
}

/** Runs `argv` under GNU time with stdin from `input`; wall milliseconds and peak RSS. */
async function timedRun(argv: string[], input: string, label: string): Promise<Timed> {
  const r = await runCommand("/usr/bin/time", ["-f", "BENCHRSS %M", ...argv], { stdinFile: input });
  if (r.code !== 0) throw new Error(`${label} failed (exit ${r.code}): ${r.stderr.trim().slice(-500)}`);
  const m = /BENCHRSS (\d+)/.exec(r.stderr);
  return { ms: r.ms, rss: m ? Number(m[1]) * 1024 : 0 };
}

/**
 * Rows 8 and 9: `mails` messages through outpost's client library (one process), through `outpost sendmail --now`
 * and through msmtp (one process per message), plain and STARTTLS; then single invocations timed.
 */
export async function benchMail(opts: MailRowOptions, results: Results): Promise<void> {
  const dir = `${opts.tmp}/mail`;
  await Deno.mkdir(`${dir}/state`, { recursive: true });
  const certs = await makeCert(dir);
  const msmtp = await which("msmtp");
  if (!msmtp) results.skipped.push("msmtp: not installed (apt-get install msmtp); its columns are empty");
  const msmtprc = `${dir}/msmtprc`;
  await Deno.writeTextFile(msmtprc, "# empty: everything is on the command line\n", { mode: 0o600 });
  const message = `${dir}/message.eml`;
  await Deno.writeTextFile(
    message,
    [
      `From: Bench <${FROM}>`,
      `To: <${RCPT}>`,
      "Subject: outpost bench message",
      "Date: Thu, 01 Jan 2026 00:00:00 +0000",
      "Message-ID: <bench@example.com>",
      "",
      ...Array.from(
        { length: 16 },
        (_, i) => `Line ${i} of a short alert-sized message body for the benchmark.`,
      ),
      "",
    ].join("\r\n"),
  );
  const bundle = await bundleCli(dir);
  const outpostCli = bundle
    ? [Deno.execPath(), "run", "--allow-all", "--no-config", "--no-npm", "--no-remote", bundle]
    : [Deno.execPath(), "run", "--allow-all", `${REPO}/src/cli/main.ts`];
  if (!bundle) results.notes.push("Bundling failed: `outpost sendmail` ran from source (src/cli/main.ts).");
  else {results.notes.push(
      "`outpost sendmail` ran from the bundle the board uses (`deno bundle` of src/cli/main.ts).",
    );}

  for (const mode of ["plain", "tls"] as const) {
    const sink = await startSink(mode === "tls" ? { cert: certs.cert, key: certs.key } : null);
    try {
      const cfg = `${dir}/outpost-${mode}.toml`;
      await Deno.writeTextFile(cfg, smtpToml(sink.port, mode === "tls" ? certs.ca : null, `${dir}/state`));
      const load = await loadAverage();
      const n = opts.mails;

      // Client library: one process, n connections.
      let got = sink.received.length;
      const lib = await runCommand(
        Deno.execPath(),
        ["run", "--allow-all", `${HERE}outpost_mail_client.ts`, cfg, String(n), message, RCPT],
        { env: { OUTPOST_LOG: "off", NO_COLOR: "1" } },
      );
      const done = /DONE ([\d.]+)/.exec(lib.stdout);
      if (lib.code !== 0 || !done) {
        throw new Error(`outpost mail client failed: ${lib.stderr.trim().slice(-500)}`);
      }
      if (sink.received.length - got !== n) {
        throw new Error(`The sink got ${sink.received.length - got} of ${n}.`);
      }
      results.set(`mail_${mode}`, "outpost", {
        value: n / (Number(done[1]) / 1000),
        load,
        note: "one process, one connection per message, loop timed inside",
      });
      opts.log(`  ${mode}: outpost client library ${(n / (Number(done[1]) / 1000)).toFixed(0)} msgs/s`);

      // One process per message: outpost sendmail --now, msmtp.
      const perProcess: Record<string, string[] | null> = {
        outpost: [...outpostCli, "sendmail", "--now", "-C", cfg, "-i", RCPT],
        msmtp: msmtp
          ? [
            msmtp,
            "-C",
            msmtprc,
            "--host=127.0.0.1",
            `--port=${sink.port}`,
            `--from=${FROM}`,
            "--auth=off",
            "--domain=bench",
            ...(mode === "tls"
              ? ["--tls=on", "--tls-starttls=on", `--tls-trust-file=${certs.ca}`]
              : ["--tls=off"]),
            RCPT,
          ]
          : null,
      };
      for (const [prog, argv] of Object.entries(perProcess)) {
        if (!argv) continue;
        got = sink.received.length;
        const runs: Timed[] = [];
        const t0 = performance.now();
        for (let i = 0; i < n; i++) runs.push(await timedRun(argv, message, `${prog} (${mode})`));
        const seconds = (performance.now() - t0) / 1000;
        if (sink.received.length - got !== n) {
          throw new Error(`The sink got ${sink.received.length - got} of ${n} messages from ${prog}.`);
        }
        results.set(`mail_${mode}_proc`, prog, { value: n / seconds, load });
        if (mode === "plain") {
          const ms = runs.map((r) => r.ms);
          results.set("sendmail_ms", prog, { value: median(ms), runs: ms, load });
          results.set("sendmail_rss", prog, { value: Math.max(...runs.map((r) => r.rss)), load });
        }
        opts.log(`  ${mode}: ${prog} one process per message ${(n / seconds).toFixed(1)} msgs/s`);
      }

      // Queue only (what cron's MAILTO does by default): outpost sendmail without --now.
      if (mode === "plain") {
        const runs: Timed[] = [];
        for (let i = 0; i < opts.invocations; i++) {
          runs.push(
            await timedRun([...outpostCli, "sendmail", "-C", cfg, "-i", RCPT], message, "outpost sendmail"),
          );
        }
        const ms = runs.map((r) => r.ms);
        results.set("sendmail_queue_ms", "outpost", { value: median(ms), runs: ms, load });
        results.set("sendmail_queue_rss", "outpost", { value: Math.max(...runs.map((r) => r.rss)), load });
      }
    } finally {
      await sink.child.stop();
    }
  }
}

/**
 * Row 10 (and the daemon's idle RSS for row 6): `outpost serve` with a file sensor polled every
 * `alertIntervalMs`; the value is pushed over its threshold at a random moment and the time until the sink
 * accepts the ALERT mail is recorded, `alertTrials` times (each followed by a recovery).
 */
export async function benchAlert(opts: MailRowOptions, results: Results): Promise<void> {
  const dir = `${opts.tmp}/alert`;
  await Deno.mkdir(`${dir}/state`, { recursive: true });
  await Deno.mkdir(`${dir}/ftp`, { recursive: true });
  const sensor = `${dir}/sensor`;
  await Deno.writeTextFile(sensor, "20\n");
  const sink = await startSink(null);
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const ftpPort = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const cfg = `${dir}/outpost.toml`;
  await Deno.writeTextFile(
    cfg,
    [
      "[device]",
      'name = "bench"',
      `state_dir = "${dir}/state"`,
      "",
      "[ftp]",
      'host = "127.0.0.1"',
      `port = ${ftpPort}`,
      "",
      "[[ftp.users]]",
      'name = "bench"',
      `password_hash = "${await hashPassword("bench-pw", 1000)}"`,
      `root = "${dir}/ftp"`,
      'permissions = ["all"]',
      "",
      smtpToml(sink.port, null, `${dir}/state`).split("\n").slice(4).join("\n"),
      "[outbox]",
      'retry_min = "1s"',
      'retry_max = "2s"',
      "",
      "[alerts]",
      `to = ["${RCPT}"]`,
      `interval = "${opts.alertIntervalMs}ms"`,
      "",
      "[sensors.bench]",
      'type = "file"',
      `path = "${sensor}"`,
      "",
      "[[rules]]",
      'sensor = "bench"',
      "above = 50",
      "clear_at = 40",
      'cooldown = "0s"',
      "",
    ].join("\n"),
  );
  const daemon = BenchChild.spawn(Deno.execPath(), {
    args: ["run", "--allow-all", `${REPO}/src/cli/main.ts`, "serve", "--config", cfg, "--grace", "1"],
  });
  try {
    await daemon.waitLine(/FTP listening/, 60_000);
    await new Promise((r) => setTimeout(r, 2000 + opts.alertIntervalMs));
    const load = await loadAverage();
    const idle = await treeMemory(daemon.pid);
    results.set("idle_rss_daemon", "outpost", {
      value: idle.rss,
      load,
      note: `PSS ${(idle.pss / 1e6).toFixed(1)} MB, private (RssAnon) ${(idle.anon / 1e6).toFixed(1)} MB, ` +
        `${idle.processes} process(es)`,
    });
    results.set("idle_anon_daemon", "outpost", { value: idle.anon, load });
    const waitFor = async (re: RegExp, from: number, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const hit = sink.received.slice(from).find((m) => re.test(m.subject));
        if (hit) return hit;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`No mail matching ${re} reached the sink within ${timeoutMs} ms.`);
    };
    const latencies: number[] = [];
    for (let i = 0; i < opts.alertTrials; i++) {
      await new Promise((r) => setTimeout(r, Math.random() * opts.alertIntervalMs));
      const from = sink.received.length;
      const t0 = Date.now();
      await Deno.writeTextFile(sensor, `${60 + i}\n`);
      const hit = await waitFor(/ALERT/, from, 30_000);
      latencies.push(hit.at - t0);
      opts.log(`  alert trial ${i + 1}: ${(hit.at - t0).toFixed(0)} ms`);
      const from2 = sink.received.length;
      await Deno.writeTextFile(sensor, "20\n");
      await waitFor(/RECOVERED/, from2, 30_000);
    }
    results.set("alert_ms", "outpost", {
      value: median(latencies),
      runs: latencies,
      load,
      note: `sensor polled every ${opts.alertIntervalMs} ms; ${opts.alertTrials} trials at random phases`,
    });
  } finally {
    await daemon.stop();
    await sink.child.stop();
  }
}
