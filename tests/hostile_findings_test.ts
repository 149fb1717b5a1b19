/**
 * A hostile-client review (2026-12-02) against the FTP server and the status page: each test here failed on the
 * code it was written against (a FIFO freezing the process, the status port crashing the daemon, one address
 * holding the passive range, REIN past the login limits, REST + STOR writing before any data, FTP accounts seeing
 * each other on the status page, terminal escapes in `outpost status`) and passes with the fix. Every network
 * wait is bounded; servers that could wedge run in a child process.
 */
import assert from "node:assert/strict";
import * as nodeFs from "node:fs";
import { FtpControl, greetingFrom, startFtp } from "./helpers/ftp_fixture.ts";
import { startFtpChild } from "./helpers/ftp_child.ts";

const HOST = "127.0.0.1";

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** A fresh connection gets its 220 greeting within `ms` (false when the server does not answer in time). */
async function greets(port: number, ms: number): Promise<boolean> {
  let c: FtpControl | null = null;
  try {
    c = await FtpControl.connect(HOST, port);
    const r = await c.replyOrNull(ms);
    return r?.code === 220;
  } catch {
    return false;
  } finally {
    c?.close();
  }
}

async function mkfifo(path: string): Promise<void> {
  const out = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(out.success, "mkfifo failed");
}

/**
 * A named pipe inside a user's root (put there by any local process, a shared folder, a backup tool...):
 * one verb from one logged-in client opens it synchronously on the event loop, and the open blocks until the
 * other end of the pipe is opened, so the whole daemon (every session, every listener) stops.
 */
for (const verb of ["RETR", "APPE", "SITE CHMOD 644"] as const) {
  Deno.test(`findings: ${verb} of a FIFO inside the root does not freeze the whole server`, async () => {
    const child = await startFtpChild({ selfCheckMs: 0 });
    const fifo = `${child.info.root}/pipe`;
    await mkfifo(fifo);
    const c = await FtpControl.login(HOST, child.info.port);
    let release: number | null = null;
    try {
      assert.ok(await greets(child.info.port, 3000), "no greeting even before the FIFO was touched");
      if (verb !== "SITE CHMOD 644") {
        const { data } = await c.pasvConnect();
        await c.send(`${verb} pipe\r\n`);
        await sleep(300);
        data.close();
      } else {
        await c.send(`${verb} pipe\r\n`);
        await sleep(300);
      }
      const alive = await greets(child.info.port, 3000);
      // Unblock a server stuck in its open (the other end of the pipe) so the child can end; without blocking
      // here when the server never opened it (a write end with no reader fails with ENXIO).
      try {
        const k = nodeFs.constants;
        release = nodeFs.openSync(fifo, (verb === "APPE" ? k.O_RDONLY : k.O_WRONLY) | k.O_NONBLOCK);
      } catch {
        release = null;
      }
      assert.ok(alive, `after "${verb} pipe" on a FIFO a new connection got no greeting within 3 s`);
    } finally {
      if (release !== null) nodeFs.closeSync(release);
      c.close();
      await child.close();
      await Deno.remove(`${child.info.root}/..`, { recursive: true }).catch(() => {});
    }
  });
}

/** The daemon with the status page on, in a child process under `ulimit -n`; prints `{ url }` when up. */
function daemonChildScript(): string {
  const src = (p: string) => new URL(`../src/${p}`, import.meta.url).href;
  return `
import { parseConfig } from "${src("app/outpost_config.ts")}";
import { hashPassword } from "${src("config/password.ts")}";
import { OutpostDaemon } from "${src("daemon/outpost_daemon.ts")}";
import { setLogSink } from "${src("log/logger.ts")}";
Deno.addSignalListener("SIGHUP", () => {}); // as the daemon does at start
setLogSink(() => {});
const [dir, ftpPort, httpPort] = Deno.args;
await Deno.mkdir(dir + "/root", { recursive: true });
const text = \`
[device]
name = "pi-findings"
state_dir = "state"
[ftp]
host = "127.0.0.1"
port = \${ftpPort}
[[ftp.users]]
name = "alice"
password_hash = "\${await hashPassword("secret", 1000)}"
root = "root"
[status]
http = true
port = \${httpPort}
\`;
await Deno.writeTextFile(dir + "/outpost.toml", text);
const d = await OutpostDaemon.start(parseConfig(text, dir + "/outpost.toml"));
console.log(JSON.stringify({ url: d.status?.httpUrl }));
for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
await d.stop(0);
Deno.exit(0);
`;
}

function freePort(): number {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * The status page (Deno.serve) takes any number of connections and never closes one that sends nothing (no
 * header timeout, no per-address limit; the login is asked only once a request arrived). Past the descriptor
 * limit, Deno.serve's accept loop rejects with EMFILE, uncaught: the whole daemon (FTP, mail, alerts) exits.
 * On a board with the page on the LAN (a login configured), any LAN host can do this without a password.
 */
Deno.test("findings: idle connections to the status page neither crash the daemon nor lock out FTP", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost_findings_" });
  const script = `${dir}/daemon_child.ts`;
  await Deno.writeTextFile(script, daemonChildScript());
  const [ftpPort, httpPort] = [freePort(), freePort()];
  const config = new URL("../deno.json", import.meta.url).pathname;
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n 256 && exec "${Deno.execPath()}" run -A --config "${config}" "${script}" "${dir}" ${ftpPort} ${httpPort}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const held: Deno.TcpConn[] = [];
  try {
    // Wait (bounded) for the FTP greeting.
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = await greets(ftpPort, 2000);
      if (!up) await sleep(200);
    }
    assert.ok(up, "the daemon never came up");
    // 400 idle connections to the status port, from one address (bounded: stop at the first failure).
    for (let i = 0; i < 400; i++) {
      try {
        held.push(await Deno.connect({ hostname: HOST, port: httpPort }));
      } catch {
        break;
      }
    }
    await sleep(1500);
    let exited = false;
    child.status.then(() => exited = true);
    await sleep(100);
    assert.ok(!exited, `the daemon exited after ${held.length} idle connections to its status page`);
    assert.ok(
      await greets(ftpPort, 3000),
      `FTP gave no greeting while ${held.length} status connections were held`,
    );
  } finally {
    for (const c of held) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
    try {
      await child.stdin.close();
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, 10_000);
    await child.status;
    clearTimeout(timer);
    await child.stdout.cancel().catch(() => {});
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** A free run of `n` TCP ports on loopback (checked by binding each once). */
function freeRange(n: number): number {
  for (let i = 0; i < 50; i++) {
    const start = 40_000 + Math.floor(Math.random() * 20_000);
    const ls: Deno.Listener[] = [];
    try {
      for (let p = start; p < start + n; p++) ls.push(Deno.listen({ hostname: HOST, port: p }));
      return start;
    } catch {
      // Taken: try another run.
    } finally {
      for (const l of ls) l.close();
    }
  }
  throw new Error("No free port range.");
}

/**
 * `[ftp.passive] ports` set to a small range (as the README advises behind NAT): one logged-in client opens a
 * session per port and sends PASV in each (re-sent before the data timeout, it keeps them forever). Every other
 * user, from any address, then gets 425 for PASV/EPSV: nothing limits passive listeners per address or user.
 */
Deno.test("findings: one address cannot hold every port of the passive range", async () => {
  const span = 4;
  const portMin = freeRange(span);
  const fx = await startFtp({ server: { passive: { portMin, portMax: portMin + span - 1 } } });
  const hog: FtpControl[] = [];
  try {
    for (let i = 0; i < span; i++) {
      const c = await FtpControl.login(HOST, fx.port);
      hog.push(c);
      const r = await c.cmd("PASV");
      if (r.code !== 227) {
        // The defence: past its share of the range, an address is refused (and told why).
        assert.match(r.text, /^425 .*share of the passive ports/);
        break;
      }
    }
    // Another user from another address.
    const r = await commandFrom("127.0.0.2", fx.port, "reader", "PASV");
    assert.match(r, /^227 /, `another address got "${r}" while one address held ${span} passive ports`);
  } finally {
    for (const c of hog) c.close();
    await fx.close();
  }
});

/**
 * Logs in as `user` over a control connection from `localAddress` (Deno.connect cannot choose the source
 * address, node:net can), sends `command` and returns its reply line. Bounded by `ms`.
 */
async function commandFrom(localAddress: string, port: number, user: string, command: string, ms = 10_000) {
  const net = await import("node:net");
  const sock = net.connect({ host: HOST, port, localAddress });
  let buf = "";
  let wake: (() => void) | null = null;
  sock.setEncoding("utf8");
  sock.on("data", (d: string) => {
    buf += d;
    wake?.();
  });
  sock.on("error", () => wake?.());
  sock.on("close", () => wake?.());
  const deadline = Date.now() + ms;
  const reply = async (): Promise<string> => {
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const m = /^(\d{3}) .*\r\n/m.exec(buf);
      if (m) {
        const line = buf.slice(m.index, m.index + m[0].length - 2);
        buf = buf.slice(m.index + m[0].length);
        return line;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, 200);
      });
      clearTimeout(timer);
    }
    throw new Error(`No reply from ${localAddress} (have ${JSON.stringify(buf)})`);
  };
  try {
    assert.match(await reply(), /^220 /);
    sock.write(`USER ${user}\r\n`);
    assert.match(await reply(), /^331 /);
    sock.write(`PASS secret\r\n`);
    assert.match(await reply(), /^230 /);
    sock.write(`${command}\r\n`);
    return await reply();
  } finally {
    sock.destroy();
  }
}

/**
 * The limits for connections that have not logged in (per address and in total) are checked only when a
 * connection is accepted. A session that logs in and sends REIN is "not logged in" again, with a fresh login
 * timeout, but was never admitted as such: one address (one account, or anonymous where it is on) logs in as
 * many sessions as `max_sessions_per_ip` allows, REINs them all, and fills every unauthenticated slot; each
 * other client then gets 421 at connect. Logging in again and REIN before the timeout keeps it up forever.
 */
Deno.test("findings: REIN cannot take more unauthenticated slots than one address may hold", async () => {
  const fx = await startFtp({ server: { maxUnauthenticatedPerIp: 2, maxUnauthenticated: 4 } });
  const held: FtpControl[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      const c = await FtpControl.login(HOST, fx.port); // each login frees its unauthenticated slot
      held.push(c);
    }
    for (const c of held) {
      const r = await c.cmd("REIN");
      if (r.code !== 220) break; // refused: the limit holds
    }
    const g = await greetingFrom(fx.port, "127.0.0.2");
    assert.match(g, /^220 /, `another address was refused after one address sent REIN in 4 sessions: ${g}`);
  } finally {
    for (const c of held) c.close();
    await fx.close();
  }
});

/**
 * REST n + STOR copies the first n bytes of the existing file into the upload's temp file at once, before the
 * 150 and before any data connection: 30 bytes of commands make the server write the whole file again, held
 * until the data timeout (30 s). Fifty sessions of one address against one 1 GB file write 50 GB: the card
 * is full (uploads of others, the mail outbox and the state folder fail with it) without the client sending a
 * byte, and it can be repeated for ever (SD card wear). FTP uploads keep no free-space reserve either.
 */
Deno.test("findings: REST + STOR writes nothing to disk before the client sends data", async () => {
  const fx = await startFtp({ server: { dataTimeoutMs: 20_000 } });
  const size = 16 << 20;
  const sessions: FtpControl[] = [];
  try {
    const f = await Deno.open(`${fx.root}/big.bin`, { write: true, create: true });
    await f.truncate(size); // sparse: costs the test nothing to create
    f.close();
    for (let i = 0; i < 3; i++) {
      const c = await FtpControl.login(HOST, fx.port);
      sessions.push(c);
      assert.equal((await c.cmd("TYPE I")).code, 200);
      assert.equal((await c.cmd(`REST ${size}`)).code, 350);
      assert.equal((await c.cmd("PASV")).code, 227); // and never connected
      await c.send("STOR big.bin\r\n");
    }
    await sleep(1500);
    let written = 0;
    for await (const e of Deno.readDir(fx.root)) {
      if (e.name.startsWith(".outpost-upload-")) written += (await Deno.stat(`${fx.root}/${e.name}`)).size;
    }
    assert.equal(
      written,
      0,
      `3 x "REST ${size}" + STOR with no data connection wrote ${written} bytes of temp files (client sent 0)`,
    );
  } finally {
    for (const c of sessions) c.close();
    await fx.close();
  }
});

/**
 * `[status] ftp_logins = true` (the default) lets every FTP account with a password log in to the status page,
 * and /status.json, /metrics and the page show every session: each user's name, address and the path of the
 * file being transferred. So bob, confined to /srv/ftp/bob, sees which files alice moves in /srv/ftp/alice and
 * from where (also a read-only account does).
 */
Deno.test("findings: an FTP login to the status page does not show another user's sessions and files", async () => {
  const { parseConfig } = await import("../src/app/outpost_config.ts");
  const { hashPassword } = await import("../src/config/password.ts");
  const { OutpostDaemon } = await import("../src/daemon/outpost_daemon.ts");
  const { setLogSink } = await import("../src/log/logger.ts");
  setLogSink(() => {});
  const dir = await Deno.makeTempDir({ prefix: "outpost_findings_" });
  const [ftpPort, httpPort] = [freePort(), freePort()];
  await Deno.mkdir(`${dir}/alice`);
  await Deno.mkdir(`${dir}/bob`);
  const big = await Deno.open(`${dir}/alice/salary-2026-secret.xlsx`, { write: true, create: true });
  await big.truncate(64 << 20);
  big.close();
  const hash = await hashPassword("secret", 1000);
  const text = `
[device]
name = "pi-findings"
state_dir = "state"
[ftp]
host = "127.0.0.1"
port = ${ftpPort}
[[ftp.users]]
name = "alice"
password_hash = "${hash}"
root = "alice"
[[ftp.users]]
name = "bob"
password_hash = "${hash}"
root = "bob"
permissions = ["read-only"]
[status]
http = true
port = ${httpPort}
user = "admin"
password_hash = "${hash}"
`;
  await Deno.writeTextFile(`${dir}/outpost.toml`, text);
  const d = await OutpostDaemon.start(parseConfig(text, `${dir}/outpost.toml`));
  const alice = await FtpControl.login(HOST, ftpPort, "alice", "secret");
  let data: Deno.TcpConn | null = null;
  try {
    assert.equal((await alice.cmd("TYPE I")).code, 200);
    data = (await alice.pasvConnect()).data; // connected, never read: the RETR stays in progress
    assert.equal((await alice.cmd("RETR salary-2026-secret.xlsx")).code, 150);
    const leaks: string[] = [];
    for (const path of ["status.json", "metrics", ""]) {
      const r = await fetch(`http://127.0.0.1:${httpPort}/${path}`, {
        headers: { authorization: `Basic ${btoa("bob:secret")}` },
      });
      const body = await r.text();
      if (r.status === 200 && body.includes("salary-2026-secret")) leaks.push(`/${path}`);
    }
    assert.deepEqual(leaks, [], `bob (read-only, own root) sees alice's file name in ${leaks.join(", ")}`);
  } finally {
    data?.close();
    alice.close();
    await d.stop(0);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/**
 * A client may name a file with ESC, BEL and C1 bytes (only NUL, CR and LF are refused); replies show them as
 * "?", but `outpost status` prints the path of a transfer in progress as it is. An admin who runs it in a
 * terminal gets the client's escape sequences: window title set, screen cleared, and on some terminals worse
 * (OSC 52 writes the clipboard, some report the title back as typed input).
 */
Deno.test("findings: `outpost status` does not print a client's escape sequences from a file name", async () => {
  const { formatStatusText } = await import("../src/status/status_text.ts");
  const fx = await startFtp();
  const c = await FtpControl.login(HOST, fx.port);
  let data: Deno.TcpConn | null = null;
  try {
    const evil = "x\x1b]0;PWNED\x07\x1b[2J\x1b]52;c;ZWNobyBwd25lZA==\x07.bin";
    assert.equal((await c.cmd("TYPE I")).code, 200);
    data = (await c.pasvConnect()).data;
    // Upload under the hostile name (the data connection stays open: the transfer is in progress).
    const r = await c.cmd(`STOR ${evil}`);
    assert.equal(r.code, 150, r.text);
    await data.write(new Uint8Array(1024));
    await sleep(200);
    const snap = {
      v: 1,
      now: Date.now(),
      daemon: { name: "pi", board: "rpi4", pid: 1, version: "0", startedAt: 0, uptimeMs: 0 },
      config: { file: null, using: "embedded", edited: false, problems: [] },
      ftp: fx.server.status(),
      monitor: false,
      samples: 0,
      sensors: [],
      rules: [],
      outbox: {
        smtp: null,
        queued: 0,
        failed: 0,
        oldestQueuedAt: null,
        lastError: null,
        failingSince: null,
        results: { delivered: 0, failed: 0, deferred: 0 },
      },
      http: null,
    } as unknown as Parameters<typeof formatStatusText>[0];
    const text = formatStatusText(snap);
    assert.ok(text.includes("uploading"), `no upload in progress in:\n${text}`);
    // deno-lint-ignore no-control-regex
    const raw = /[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/.exec(text);
    assert.equal(raw, null, `outpost status prints raw control bytes: ${JSON.stringify(text)}`);
  } finally {
    data?.close();
    c.close();
    await fx.close();
  }
});
