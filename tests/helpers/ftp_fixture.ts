/**
 * The FTP test fixture: an in-process {@link FtpServer} on loopback in a temp dir, a runner for Python ftplib
 * scripts against it, a raw control client for hostile cases, and file generation and tree hashing helpers
 * (child processes and single-file hashes: `test_util.ts`).
 *
 * @module
 */

import { hashPassword } from "../../src/config/password.ts";
import { Accounts } from "../../src/ftp/accounts.ts";
import { FULL_ACCESS, READ_ONLY } from "../../src/ftp/ftp_file_system.ts";
import { defaultFtpServerOptions, FtpServer, type FtpServerOptions } from "../../src/ftp/ftp_server.ts";
import { LineReader } from "../../src/net/line_reader.ts";
import { SYSTEM_PYTHON } from "./peers.ts";
import { sha256File } from "./test_util.ts";
import net from "node:net";

/** Login of the fixture's full-access user. */
export const USER = "alice";
/** Password of both fixture users (alice, full access; reader, read-only). */
export const PASS = "secret";

/** A running server and its temp directories. */
export interface FtpFixture {
  /** The server. */
  server: FtpServer;
  /** Its control port. */
  port: number;
  /** The address it listens on, as given ("127.0.0.1", "::1", "0.0.0.0"). */
  hostname: string;
  /** Host name for URLs: "127.0.0.1" or "[::1]". */
  urlHost: string;
  /** Temp dir holding root/, pub/ and any scratch files of the test. */
  base: string;
  /** The root of alice and reader. */
  root: string;
  /** The anonymous root. */
  pub: string;
  /** "ftp://alice:pw@host:port" (no trailing slash). */
  url: string;
  /** Closes the server and removes the temp dir. */
  close(): Promise<void>;
}

let cachedHash: Promise<string> | null = null;

/**
 * Starts a server on `hostname` (default 127.0.0.1) port 0 with users alice (full access) and reader
 * (read-only), both with password {@link PASS} and root `root/`, and, if asked, anonymous read-only access to
 * `pub/`. Failed logins are delayed 10 ms (not the server's 1 s) unless `server` says otherwise.
 *
 * @example
 * ```ts
 * const fx = await startFtp({ anonymous: true, server: { maxSessions: 3 } });
 * try {
 *   // drive fx.port
 * } finally {
 *   await fx.close();
 * }
 * ```
 */
export async function startFtp(
  opts: { anonymous?: boolean; hostname?: string; server?: Partial<FtpServerOptions> } = {},
): Promise<FtpFixture> {
  cachedHash ??= hashPassword(PASS, 1000);
  const hash = await cachedHash;
  const base = await Deno.makeTempDir({ prefix: "outpost_ftp_it_" });
  const root = `${base}/root`;
  const pub = `${base}/pub`;
  await Deno.mkdir(root);
  await Deno.mkdir(pub);
  const accounts = new Accounts({
    users: [
      { name: USER, passwordHash: hash, root, perms: FULL_ACCESS },
      { name: "reader", passwordHash: hash, root, perms: READ_ONLY },
    ],
    anonymous: opts.anonymous ? { enabled: true, root: pub } : null,
  });
  const hostname = opts.hostname ?? "127.0.0.1";
  const server = new FtpServer({
    ...defaultFtpServerOptions(accounts),
    hostname,
    port: 0,
    loginFailDelayMs: 10,
    ...opts.server,
  });
  try {
    await server.listen();
  } catch (e) {
    await Deno.remove(base, { recursive: true });
    throw e;
  }
  const urlHost = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    server,
    port: server.port,
    hostname,
    urlHost,
    base,
    root,
    pub,
    url: `ftp://${USER}:${PASS}@${urlHost}:${server.port}`,
    close: async () => {
      await server.close({ graceMs: 0 });
      await Deno.remove(base, { recursive: true });
    },
  };
}

/**
 * Writes `size` pseudo-random bytes (seeded, so reruns produce the same file) to `path`.
 *
 * @example
 * ```ts
 * await writeRandomFile("/tmp/x", 1 << 20, 7);
 * ```
 */
export async function writeRandomFile(path: string, size: number, seed = 1): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const buf = new Uint8Array(1 << 20);
    let x = (seed * 2654435761) >>> 0 || 1;
    let left = size;
    while (left > 0) {
      const n = Math.min(left, buf.length);
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x >>>= 0;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        buf[i] = x & 0xff;
      }
      let off = 0;
      while (off < n) off += await f.write(buf.subarray(off, n));
      left -= n;
    }
  } finally {
    f.close();
  }
}

/**
 * Maps every regular file under `dir` (relative path, sorted) to its SHA-256.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const a = await Deno.makeTempDir();
 * const b = await Deno.makeTempDir();
 * assert.deepEqual(await treeHashes(a), await treeHashes(b));
 * ```
 */
export async function treeHashes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string, depth: number): Promise<void> => {
    if (depth > 32) throw new Error("Tree walk aborted: deeper than 32 levels.");
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(r, depth + 1);
      else if (e.isFile) out.set(r, await sha256File(`${dir}/${r}`));
    }
  };
  await walk("", 0);
  return new Map([...out.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** One FTP reply. */
export interface FtpReply {
  code: number;
  lines: string[];
  text: string;
}

/**
 * A raw FTP control connection for hostile tests: send exact bytes, read whole (multi-line) replies.
 *
 * @example
 * ```ts
 * const c = await FtpControl.connect("127.0.0.1", 2121);
 * await c.reply(); // 220
 * await c.cmd("USER alice");
 * c.close();
 * ```
 */
export class FtpControl {
  readonly conn: Deno.TcpConn;
  readonly reader: LineReader;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new LineReader(conn, { maxLineLength: 64 * 1024 });
  }

  /** Connects (and does not read the greeting). */
  static async connect(hostname: string, port: number): Promise<FtpControl> {
    return new FtpControl(await Deno.connect({ hostname, port }));
  }

  /** Connects, reads the 220 greeting and logs in; throws when any step fails. */
  static async login(hostname: string, port: number, user = USER, pass = PASS): Promise<FtpControl> {
    const c = await FtpControl.connect(hostname, port);
    try {
      const g = await c.reply();
      if (g.code !== 220) throw new Error(`Greeting was ${g.text}`);
      const u = await c.cmd(`USER ${user}`);
      if (u.code === 331) {
        const p = await c.cmd(`PASS ${pass}`);
        if (p.code !== 230) throw new Error(`Login failed: ${p.text}`);
      } else if (u.code !== 230) throw new Error(`USER answered ${u.text}`);
      return c;
    } catch (e) {
      c.close();
      throw e;
    }
  }

  /** Sends raw text or bytes as is. */
  async send(data: string | Uint8Array): Promise<void> {
    let bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    while (bytes.length > 0) {
      const n = await this.conn.write(bytes);
      bytes = bytes.subarray(n);
    }
  }

  /**
   * Reads one complete reply, or null when the server closed the connection. Throws after `timeoutMs`
   * (a safety bound: the connection is closed so the test cannot hang).
   */
  async replyOrNull(timeoutMs = 15_000): Promise<FtpReply | null> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.close();
    }, timeoutMs);
    try {
      const lines: string[] = [];
      for (let i = 0; i < 10_000; i++) {
        let line: string | null;
        try {
          line = await this.reader.readLine();
        } catch (e) {
          if (timedOut) throw new Error(`No reply within ${timeoutMs} ms (after: ${lines.join(" | ")})`);
          if (e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BadResource) {
            return lines.length ? this.#make(lines) : null;
          }
          throw e;
        }
        if (line === null) {
          if (timedOut) throw new Error(`No reply within ${timeoutMs} ms (after: ${lines.join(" | ")})`);
          if (lines.length) throw new Error(`Connection closed mid-reply: ${lines.join(" | ")}`);
          return null;
        }
        lines.push(line);
        const m = /^(\d{3})([ -])/.exec(lines[0]);
        if (!m) throw new Error(`Malformed reply line: ${JSON.stringify(line)}`);
        if (m[2] === " ") return this.#make(lines);
        if (lines.length > 1 && line.startsWith(`${m[1]} `)) return this.#make(lines);
      }
      throw new Error("Reply longer than 10000 lines.");
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads one complete reply; throws when the connection closed instead. */
  async reply(timeoutMs?: number): Promise<FtpReply> {
    const r = await this.replyOrNull(timeoutMs);
    if (r === null) throw new Error("Connection closed instead of a reply.");
    return r;
  }

  #make(lines: string[]): FtpReply {
    return { code: Number(lines[0].slice(0, 3)), lines, text: lines.join("\n") };
  }

  /** Sends `line` + CRLF and reads the reply. */
  async cmd(line: string, timeoutMs?: number): Promise<FtpReply> {
    await this.send(line + "\r\n");
    return await this.reply(timeoutMs);
  }

  /** Sends `line` + CRLF and reads the reply; null when the server closed (or reset) the connection. */
  async replyOrNullAfter(line: string, timeoutMs?: number): Promise<FtpReply | null> {
    try {
      await this.send(line + "\r\n");
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset) return null;
      throw e;
    }
    return await this.replyOrNull(timeoutMs);
  }

  /** Sends PASV and opens the data connection it names. */
  async pasvConnect(): Promise<{ reply: FtpReply; data: Deno.TcpConn }> {
    const r = await this.cmd("PASV");
    const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(r.text);
    if (r.code !== 227 || !m) throw new Error(`PASV failed: ${r.text}`);
    const data = await Deno.connect({
      hostname: `${m[1]}.${m[2]}.${m[3]}.${m[4]}`,
      port: +m[5] * 256 + +m[6],
    });
    return { reply: r, data };
  }

  /** Closes the connection; safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * Reads a data connection to its end (bounded by `maxBytes`), closes it and decodes it as UTF-8.
 *
 * @example
 * ```ts
 * const data = await Deno.connect({ hostname: "127.0.0.1", port: 2020 }); // a passive data connection
 * const text = await readAllText(data);
 * console.log(text);
 * ```
 */
export async function readAllText(conn: Deno.Conn, maxBytes = 16 << 20): Promise<string> {
  const buf = new Uint8Array(64 * 1024);
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
      total += n;
      if (total > maxBytes) throw new Error("Data connection sent more than expected.");
    }
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return new TextDecoder().decode(all);
}

/**
 * Runs a Python script (ftplib) with FTP_HOST/FTP_PORT/FTP_DIR/FTP_ROOT/FTP_PASS in its environment; resolves to its stdout and
 * throws with its stderr when it exits non-zero.
 *
 * @example
 * ```ts
 * const fx = await startFtp();
 * const out = await runPython(fx, "import ftplib, os\nprint('ok')");
 * console.log(out); // "ok\n"
 * ```
 */
export async function runPython(
  fx: FtpFixture,
  script: string,
  env: Record<string, string> = {},
): Promise<string> {
  const file = `${fx.base}/script-${crypto.randomUUID()}.py`;
  await Deno.writeTextFile(file, PRELUDE + script);
  const out = await new Deno.Command(SYSTEM_PYTHON, {
    args: [file],
    env: {
      FTP_HOST: fx.hostname,
      FTP_PORT: String(fx.port),
      FTP_DIR: fx.base,
      FTP_ROOT: fx.root,
      FTP_PASS: PASS,
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(file);
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `Python script failed (${out.code}):\n${new TextDecoder().decode(out.stderr)}\nstdout:\n${stdout}`,
    );
  }
  return stdout;
}

const PRELUDE = `
import ftplib, os, sys, json, hashlib, socket, time, threading, io
HOST = os.environ["FTP_HOST"]; PORT = int(os.environ["FTP_PORT"]); DIR = os.environ["FTP_DIR"]
ROOT = os.environ["FTP_ROOT"]; PASSWORD = os.environ["FTP_PASS"]

REPLIES = []

class RecFTP(ftplib.FTP):
    """Records every reply, so a script can check that no reply leaks a host path."""
    def getmultiline(self):
        r = super().getmultiline()
        REPLIES.append(r)
        return r

def no_host_paths():
    for r in REPLIES:
        assert DIR not in r and ROOT not in r, f"reply leaks a host path: {r!r}"

def connect(user="alice", password=PASSWORD, encoding="utf-8", timeout=30, host=None):
    f = RecFTP(encoding=encoding, timeout=timeout)
    f.connect(host or HOST, PORT)
    if user is not None:
        f.login(user, password)
    return f

def expect(code, fn, *args):
    try:
        r = fn(*args)
    except ftplib.Error as e:
        r = str(e)
    assert r.startswith(str(code)), f"expected {code}, got {r!r} for {fn.__name__}{args!r}"
    return r

def sha_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while True:
            b = fh.read(1 << 20)
            if not b: break
            h.update(b)
    return h.hexdigest()
`;

/**
 * Connects to 127.0.0.1:`port` from `localAddress` (another loopback address = another client; Deno.connect cannot
 * choose its source address, node:net can) and resolves to the first reply line, within 10 s.
 *
 * @example
 * ```ts
 * const greeting = await greetingFrom(2121, "127.0.0.2");
 * console.log(greeting); // "220 ..."
 * ```
 */
export async function greetingFrom(port: number, localAddress: string): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress });
    let got = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`No greeting within 10 s (got ${JSON.stringify(got)})`));
    }, 10_000);
    sock.on("data", (b: Uint8Array) => {
      got += new TextDecoder().decode(b);
      if (got.includes("\r\n")) {
        clearTimeout(timer);
        sock.destroy();
        resolve(got.trim());
      }
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
