/**
 * The arm64 build under `qemu-aarch64-static`: the pinned arm64 Deno from npm runs the SAME bundle that goes into
 * the image (scripts/bundle_outpost.ts), offline (`--no-npm --no-remote`) and with narrowed permissions, and
 * serves FTP to curl on loopback (files compared by SHA-256); and `outpost serve` from a config, with the Deno
 * permissions derived by the boot-time prepare step (also run under qemu), serves FTP and mails an alert to a
 * local SMTP server (aiosmtpd).
 */

import assert from "node:assert/strict";
import { bundleOutpost, BUNDLES } from "../scripts/bundle_outpost.ts";
import { fetchDenoArm64 } from "../scripts/deno_arm64.ts";
import { findPeer, requirePeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { freePort, sha256File } from "./helpers/test_util.ts";

const QEMU = findPeer("qemu-aarch64-static");
const CURL = findPeer("curl");
const NPM = findPeer("npm");
/** The arm64 glibc and libgcc_s (packages libc6-arm64-cross and libgcc-s1-arm64-cross). */
const ARM64_PREFIX = "/usr/aarch64-linux-gnu";
const ARM64_LIBS = findPeer(`${ARM64_PREFIX}/lib/libgcc_s.so.1`) && findPeer(`${ARM64_PREFIX}/lib/libc.so.6`);
const ignore = skipWithout(QEMU, CURL, NPM, ARM64_LIBS);

/** A process started by a test, its output collected in the background. */
class Daemon {
  readonly child: Deno.ChildProcess;
  output = "";
  readonly #done: Promise<void>;

  constructor(cmd: string, args: string[], env: Record<string, string>) {
    this.child = new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#done = Promise.all([this.#drain(this.child.stdout), this.#drain(this.child.stderr)]).then(() => {});
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      if (this.output.length < 1 << 20) this.output += dec.decode(chunk, { stream: true });
    }
  }

  /** Waits (bounded) until the output matches `re`; throws with the output so far when the process exits. */
  async waitFor(re: RegExp, maxMs = 120_000): Promise<RegExpMatchArray> {
    const exited = this.child.status.then(() => true);
    for (let waited = 0; waited < maxMs; waited += 100) {
      const m = this.output.match(re);
      if (m) return m;
      const done = await Promise.race([exited, new Promise<false>((r) => setTimeout(() => r(false), 100))]);
      if (done) {
        await this.#done;
        const last = this.output.match(re);
        if (last) return last;
        throw new Error(`The process exited before printing ${re}:\n${this.output}`);
      }
    }
    throw new Error(`No ${re} within ${maxMs} ms:\n${this.output}`);
  }

  /** Sends SIGTERM and waits for the exit status (and all output). */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const status = await this.child.status;
    await this.#done;
    return status;
  }
}

async function curl(args: string[]): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(requirePeer("curl"), {
    args: ["--silent", "--show-error", "--max-time", "120", ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name: "device qemu: arm64 deno runs the image's bundle offline and serves FTP to curl",
  ignore,
  fn: async () => {
    const qemu = requirePeer("qemu-aarch64-static");
    const deno = await fetchDenoArm64();
    const dir = await Deno.makeTempDir({ prefix: "outpost-qemu-" });
    try {
      const bundle = `${dir}/outpost.js`;
      await bundleOutpost(bundle, BUNDLES["outpost.js"]);
      const root = `${dir}/ftp-root`;
      await Deno.mkdir(root);
      const payload = crypto.getRandomValues(new Uint8Array(65536));
      const file = await Deno.open(`${root}/data.bin`, { write: true, create: true });
      for (let i = 0; i < 48; i++) await file.write(payload.map((b) => b ^ i)); // 3 MiB, varied
      file.close();
      await Deno.writeTextFile(`${root}/hello.txt`, "hello from an arm64 board\n");

      const daemon = new Daemon(qemu, [
        deno,
        "run",
        "--no-config",
        "--no-npm",
        "--no-remote",
        "--no-prompt",
        `--allow-read=${root}`,
        `--allow-write=${root}`,
        "--allow-net=127.0.0.1",
        "--allow-env=OUTPOST_LOG,OUTPOST_CONFIG,NOTIFY_SOCKET,WATCHDOG_USEC,WATCHDOG_PID",
        "--allow-sys=hostname",
        "--v8-flags=--max-old-space-size=160,--max-semi-space-size=1",
        bundle,
        "ftp",
        "--root",
        root,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--anonymous",
      ], { QEMU_LD_PREFIX: ARM64_PREFIX, DENO_DIR: `${dir}/deno-dir`, NO_COLOR: "1" });
      let stopped = false;
      try {
        const m = await daemon.waitFor(/ftp:\/\/127\.0\.0\.1:(\d+)\//);
        const port = Number(m[1]);
        for (const name of ["data.bin", "hello.txt"]) {
          const got = `${dir}/got-${name}`;
          const r = await curl(["-o", got, `ftp://127.0.0.1:${port}/${name}`]);
          assert.equal(r.code, 0, `curl downloads ${name}: ${r.stderr}\n${daemon.output}`);
          assert.equal(await sha256File(got), await sha256File(`${root}/${name}`), `${name} arrives intact`);
        }
        const listing = `${dir}/listing.txt`;
        const r = await curl(["-o", listing, `ftp://127.0.0.1:${port}/`]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(await Deno.readTextFile(listing), /hello\.txt/);
        const status = await daemon.stop();
        stopped = true;
        assert.ok(
          status.code === 0 || status.signal === "SIGTERM",
          `clean exit on SIGTERM: ${daemon.output}`,
        );
        assert.doesNotMatch(
          daemon.output,
          /NotCapable|PermissionDenied|Requires .* access/,
          "sandbox is enough",
        );
      } finally {
        if (!stopped) await daemon.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function hasAiosmtpd(): Promise<string | null> {
  if (!findPeer(SYSTEM_PYTHON)) return null;
  const out = await new Deno.Command(SYSTEM_PYTHON, { args: ["-c", "import aiosmtpd"], stderr: "null" })
    .output();
  return out.code === 0 ? SYSTEM_PYTHON : null;
}

Deno.test({
  name: "device qemu: outpost serve under derived permissions serves FTP and mails an alert to local SMTP",
  ignore: skipWithout(QEMU, CURL, NPM, ARM64_LIBS, await hasAiosmtpd()),
  fn: async () => {
    const qemu = requirePeer("qemu-aarch64-static");
    const deno = await fetchDenoArm64();
    const dir = await Deno.makeTempDir({ prefix: "outpost-qemu-serve-" });
    const env = { QEMU_LD_PREFIX: ARM64_PREFIX, DENO_DIR: `${dir}/deno-dir`, NO_COLOR: "1", OUTPOST_LOG: "" };
    const base = ["run", "--no-config", "--no-npm", "--no-remote", "--no-prompt"];
    const daemons: Daemon[] = [];
    try {
      for (const name of ["outpost.js", "outpost-prepare.js"]) {
        await bundleOutpost(`${dir}/${name}`, BUNDLES[name]);
      }
      await Deno.mkdir(`${dir}/ftp`);
      await Deno.writeTextFile(`${dir}/ftp/report.csv`, "t,temp\n1,-18\n2,-3\n");
      await Deno.writeTextFile(`${dir}/freezer.txt`, "-18\n");
      const smtpPort = freePort();
      const ftpPort = freePort();
      const pasv = freePort();
      const config = `${dir}/outpost.toml`;
      await Deno.writeTextFile(
        config,
        `[device]
name = "qemu-board"
state_dir = "${dir}/state"

[ftp]
host = "127.0.0.1"
port = ${ftpPort}
active = false
[ftp.passive]
ports = "${pasv}-${pasv}"
[ftp.anonymous]
enabled = true
root = "${dir}/ftp"

[smtp]
host = "127.0.0.1"
port = ${smtpPort}
security = "none"
from = "board@example.com"

[alerts]
to = ["ops@example.com"]
interval = "1s"

[sensors.freezer]
type = "file"
path = "${dir}/freezer.txt"

[[rules]]
sensor = "freezer"
above = -10
`,
      );
      const sink = new Daemon(requirePeer(SYSTEM_PYTHON), [
        "-m",
        "aiosmtpd",
        "-n",
        "-l",
        `127.0.0.1:${smtpPort}`,
      ], {
        PYTHONUNBUFFERED: "1",
      });
      daemons.push(sink);

      // The prepare step, as the unit runs it (minus --user/--env-file): creates the state dir, prints the flags.
      const prep = await new Deno.Command(qemu, {
        args: [deno, ...base, "-A", `${dir}/outpost-prepare.js`, "--config", config, "--mkdirs"],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const flagsText = new TextDecoder().decode(prep.stdout).trim();
      assert.equal(prep.code, 0, new TextDecoder().decode(prep.stderr));
      const flags = flagsText.split(/\s+/);
      assert.ok(
        flags.some((f) =>
          f ===
            `--allow-net=127.0.0.1:${ftpPort},127.0.0.1:${pasv},127.0.0.1:${smtpPort},unix:${dir}/state/status.sock`
        ),
        flagsText,
      );
      assert.ok((await Deno.stat(`${dir}/state`)).isDirectory, "prepare created the state dir");

      const daemon = new Daemon(qemu, [
        deno,
        ...base,
        ...flags,
        `${dir}/outpost.js`,
        "serve",
        "--config",
        config,
      ], env);
      daemons.push(daemon);
      await daemon.waitFor(/ftp\S* (listen|listening|serving|started)|serve (ready|started)/);
      const got = `${dir}/got.csv`;
      let r = { code: -1, stderr: "" };
      for (let i = 0; i < 60 && r.code !== 0; i++) {
        r = await curl(["-o", got, `ftp://127.0.0.1:${ftpPort}/report.csv`]);
        if (r.code !== 0) await new Promise((res) => setTimeout(res, 500));
      }
      assert.equal(r.code, 0, `curl via serve: ${r.stderr}\n${daemon.output}`);
      assert.equal(await sha256File(got), await sha256File(`${dir}/ftp/report.csv`));

      await Deno.writeTextFile(`${dir}/freezer.txt`, "-3\n"); // above -10: alert
      await sink.waitFor(/Subject: .*freezer/i, 120_000).catch((e) => {
        throw new Error(`${(e as Error).message}\n--- daemon ---\n${daemon.output}`);
      });
      assert.match(sink.output, /ops@example\.com/);
      const status = await daemon.stop();
      assert.equal(status.code, 0, `serve drains and exits 0 on SIGTERM:\n${daemon.output}`);
      assert.doesNotMatch(
        daemon.output,
        /NotCapable|PermissionDenied|Requires .* access/,
        "the derived permissions are enough",
      );
      assert.ok(
        (await Deno.stat(`${dir}/state/last-good.toml`).catch(() => null))?.isFile,
        "serve kept a last good copy of the config in the state dir",
      );
    } finally {
      for (const d of daemons.reverse()) await d.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
