/**
 * The arm64 build under `qemu-aarch64-static`: the pinned arm64 Deno from npm runs the SAME bundle that goes into
 * the image (scripts/bundle_outpost.ts), offline (`--no-npm --no-remote`) and with narrowed permissions, and
 * serves FTP to curl on loopback (files compared by SHA-256).
 */

import assert from "node:assert/strict";
import { bundleOutpost, BUNDLES } from "../scripts/bundle_outpost.ts";
import { fetchDenoArm64 } from "../scripts/deno_arm64.ts";
import { findPeer, requirePeer, skipWithout } from "./helpers/peers.ts";

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

async function sha256(path: string): Promise<string> {
  const data = await Deno.readFile(path);
  return Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", data)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
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
        "--v8-flags=--max-old-space-size=160",
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
          assert.equal(await sha256(got), await sha256(`${root}/${name}`), `${name} arrives intact`);
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
