/**
 * An in-process FTP server in a temp dir for tests, and a runner for Python ftplib scripts against it.
 *
 * @module
 */

import { hashPassword } from "../../src/config/password.ts";
import { Accounts } from "../../src/ftp/accounts.ts";
import { FULL_ACCESS, READ_ONLY } from "../../src/ftp/ftp_file_system.ts";
import { defaultFtpServerOptions, FtpServer, type FtpServerOptions } from "../../src/ftp/ftp_server.ts";
import { SYSTEM_PYTHON } from "./peers.ts";

/** A running test server and its folders. */
export interface FtpFixture {
  server: FtpServer;
  /** alice's root (full access). */
  root: string;
  /** The anonymous (read-only) root. */
  anonRoot: string;
  /** The temp dir holding both roots and scratch files. */
  dir: string;
  host: string;
  port: number;
  /** Closes the server and removes the temp dir. */
  close(): Promise<void>;
}

let hashes: Promise<[string, string]> | null = null;

/**
 * Starts a server on `host`:0 with users alice/secret (full access), reader/secret (read-only) and anonymous.
 *
 * @example
 * ```ts
 * const fx = await startFtp();
 * await fx.close();
 * ```
 */
export async function startFtp(
  overrides: Partial<FtpServerOptions> = {},
  host = "127.0.0.1",
): Promise<FtpFixture> {
  hashes ??= Promise.all([hashPassword("secret", 1000), hashPassword("secret", 1000)]);
  const [h1, h2] = await hashes;
  const dir = await Deno.makeTempDir({ prefix: "outpost-ftp-test-" });
  const root = `${dir}/alice`;
  const anonRoot = `${dir}/pub`;
  await Deno.mkdir(root);
  await Deno.mkdir(anonRoot);
  const accounts = new Accounts({
    users: [
      { name: "alice", passwordHash: h1, root, perms: FULL_ACCESS },
      { name: "reader", passwordHash: h2, root, perms: READ_ONLY },
    ],
    anonymous: { enabled: true, root: anonRoot },
  });
  const server = new FtpServer({
    ...defaultFtpServerOptions(accounts),
    hostname: host,
    port: 0,
    loginFailDelayMs: 10,
    ...overrides,
  });
  await server.listen();
  return {
    server,
    root,
    anonRoot,
    dir,
    host,
    port: server.port,
    close: async () => {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Runs a Python script (ftplib) with FTP_HOST/FTP_PORT/FTP_DIR in its environment; resolves to its stdout and
 * throws with its stderr when it exits non-zero.
 *
 * @example
 * ```ts
 * const out = await runPython(fx, "import ftplib, os\nprint('ok')");
 * ```
 */
export async function runPython(
  fx: FtpFixture,
  script: string,
  env: Record<string, string> = {},
): Promise<string> {
  const file = `${fx.dir}/script-${crypto.randomUUID()}.py`;
  await Deno.writeTextFile(file, PRELUDE + script);
  const out = await new Deno.Command(SYSTEM_PYTHON, {
    args: [file],
    env: { FTP_HOST: fx.host, FTP_PORT: String(fx.port), FTP_DIR: fx.dir, FTP_ROOT: fx.root, ...env },
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
ROOT = os.environ["FTP_ROOT"]

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

def connect(user="alice", password="secret", encoding="utf-8", timeout=30, host=None):
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
