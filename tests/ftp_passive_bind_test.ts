/**
 * Passive transfers reached over a LAN address, under exactly the derived Deno flags (as the board's unit runs the
 * daemon). Found by the boot test: on a board the control connection's local address is the LAN address (not
 * loopback), and `--allow-net=:PORT` lets Deno listen on 0.0.0.0 and loopback only, so every passive listener
 * bound to the LAN address failed with NotCapable and every transfer got `451`. Also `host = "::"`, which needs
 * `[::]:PORT` entries.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { hashPassword } from "../src/config/password.ts";
import { denoPermissionFlags, derivePermissions } from "../scripts/derive_permissions.ts";
import { findPeer, skipWithout } from "./helpers/peers.ts";
import { freePort, sha256File } from "./helpers/test_util.ts";

const CURL = findPeer("curl");
const LAN =
  Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."))?.address ??
    null;
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

function freeRange(n: number): number[] {
  for (let attempt = 0; attempt < 100; attempt++) {
    const start = 20000 + Math.floor(Math.random() * 30000);
    const held: Deno.Listener[] = [];
    try {
      for (let p = start; p < start + n; p++) held.push(Deno.listen({ hostname: "0.0.0.0", port: p }));
      return held.map((l) => (l.addr as Deno.NetAddr).port);
    } catch {
      // Taken; another start.
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error("No free port range");
}

async function serveAndTransfer(host: string, via: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-passive-bind-" });
  const child = { proc: null as Deno.ChildProcess | null };
  try {
    const port = freePort();
    const passive = freeRange(4);
    await Deno.mkdir(`${dir}/root`);
    const configPath = `${dir}/outpost.toml`;
    const text =
      `[device]\nname = "bind-test"\nstate_dir = "${dir}/state"\n\n[ftp]\nhost = "${host}"\nport = ${port}\n` +
      `active = false\n[ftp.passive]\nports = "${passive[0]}-${passive[3]}"\n[[ftp.users]]\nname = "pi"\n` +
      `password_hash = "${await hashPassword(
        "secret",
        1000,
      )}"\nroot = "${dir}/root"\npermissions = ["all"]\n\n[alerts]\nenabled = false\n`;
    await Deno.writeTextFile(configPath, text);
    const flags = denoPermissionFlags(derivePermissions(parseConfig(text, configPath)));
    await Deno.mkdir(`${dir}/state`);
    const proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-read=${configPath},${dir}`,
        ...flags.filter((f) => !f.startsWith("--allow-read")),
        MAIN,
        "serve",
        "--config",
        configPath,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    child.proc = proc;
    let out = "";
    const drain = async (s: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const c of s) out += dec.decode(c, { stream: true });
    };
    const drained = Promise.all([drain(proc.stdout), drain(proc.stderr)]);
    const url = `ftp://${via.includes(":") ? `[${via}]` : via}:${port}`;
    for (let i = 0; i < 200; i++) {
      const c = await Deno.connect({ hostname: via, port }).catch(() => null);
      if (c) {
        c.close();
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const src = `${dir}/up.bin`;
    await Deno.writeFile(src, crypto.getRandomValues(new Uint8Array(60000)));
    const curl = (args: string[]) =>
      new Deno.Command(CURL!, { args: ["-sS", "--max-time", "20", "--user", "pi:secret", ...args] }).output();
    const up = await curl(["-T", src, `${url}/up.bin`]);
    const down = await curl(["-o", `${src}.back`, `${url}/up.bin`]);
    proc.kill("SIGTERM");
    await proc.status;
    await drained;
    const dec = new TextDecoder();
    assert.doesNotMatch(out, /NotCapable/, out);
    assert.equal(up.code, 0, `upload via ${via}: ${dec.decode(up.stderr)}\n${out}`);
    assert.equal(down.code, 0, `download via ${via}: ${dec.decode(down.stderr)}\n${out}`);
    assert.equal(await sha256File(`${src}.back`), await sha256File(src));
  } finally {
    try {
      child.proc?.kill("SIGKILL");
    } catch {
      // Already ended.
    }
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "ftp passive bind: host 0.0.0.0 reached over a LAN address works under the derived flags",
  ignore: skipWithout(CURL, LAN),
  fn: () => serveAndTransfer("0.0.0.0", LAN!),
});

Deno.test({
  name: 'ftp passive bind: host "::" (IPv4 and IPv6) works under the derived flags',
  ignore: skipWithout(CURL, LAN),
  fn: async () => {
    await serveAndTransfer("::", LAN!);
    await serveAndTransfer("::", "::1");
  },
});
