/**
 * The three FTP servers the benchmark compares, each started on 127.0.0.1 with its own temporary config and
 * stopped by its own PID: outpost (a child `deno run` of `outpost_ftp_server.ts`), vsftpd and pyftpdlib (Debian's
 * packages; never a system-wide service).
 *
 * All three serve the same folder: files to download at its top, uploads into `pub/` (vsftpd's anonymous user
 * may not write to its chroot root, so every server uploads there).
 *
 * @module
 */

import { hashPassword } from "../../src/config/password.ts";
import { BenchChild, which } from "./child.ts";

/** Python with pyftpdlib and aiosmtpd: Debian's, not a pyenv one on PATH. */
export const SYSTEM_PYTHON = "/usr/bin/python3";
const HERE = new URL(".", import.meta.url).pathname;

/** The names of the servers, in the order they run. */
export const FTP_SERVER_NAMES = ["outpost", "vsftpd", "pyftpdlib"] as const;
/** One of {@link FTP_SERVER_NAMES}. */
export type FtpServerName = typeof FTP_SERVER_NAMES[number];

/** A running server under test. */
export interface BenchFtpServer {
  name: FtpServerName;
  /** PID of the server's main process (the root of its process tree, for memory). */
  pid: number;
  /** Root of the tree whose CPU time is counted (vsftpd: the subreaper that adopts its orphaned sessions). */
  cpuPid: number;
  port: number;
  user: string;
  password: string;
  /** `ftp://user:password@127.0.0.1:port/<path>`. */
  url(path: string): string;
  /** outpost only: `Deno.memoryUsage()` of the server, after a full GC when `gc`. */
  heap?(gc: boolean): Promise<{ heapUsed: number; heapTotal: number; rss: number; external: number }>;
  /** outpost only: garbage collections traced so far. */
  gcCount?(): number;
  /** outpost only: MB the traced garbage collections freed so far (≈ bytes allocated and dropped). */
  gcFreedMb?(): number;
  stop(): Promise<void>;
}

/** Why a peer cannot run, with the install hint; null when it is installed. */
export async function missingFtpPeer(name: FtpServerName): Promise<string | null> {
  if (name === "vsftpd" && !(await which("/usr/sbin/vsftpd"))) {
    return "vsftpd is not installed (apt-get install vsftpd)";
  }
  if (name === "pyftpdlib") {
    const ok = await new Deno.Command(SYSTEM_PYTHON, { args: ["-c", "import pyftpdlib"], stderr: "null" })
      .output().then((o) => o.success, () => false);
    if (!ok) return "pyftpdlib is not installed (apt-get install python3-pyftpdlib)";
  }
  return null;
}

function urlFor(user: string, password: string, port: number) {
  return (path: string) =>
    `ftp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${
      path.replace(/^\/+/, "")
    }`;
}

async function startOutpost(root: string): Promise<BenchFtpServer> {
  const user = "bench";
  const password = "bench-pw";
  // The lowest iteration count the config accepts: logins are benchmarked, not PBKDF2.
  const hash = await hashPassword(password, 1000);
  let gcs = 0;
  let freedMb = 0;
  let replies: ((line: string) => void)[] = [];
  const stdbuf = await which("/usr/bin/stdbuf");
  const deno = [
    Deno.execPath(),
    "run",
    "--allow-all",
    `--v8-flags=--expose-gc,--trace-gc,--max-semi-space-size=1${extraV8Flags()}`,
    `${HERE}outpost_ftp_server.ts`,
    root,
    user,
    hash,
  ];
  // V8 prints --trace-gc lines with C stdio; line buffering keeps them in order with our replies.
  const [cmd, ...args] = stdbuf ? [stdbuf, "-oL", ...deno] : deno;
  const child = BenchChild.spawn(cmd, {
    args,
    stdin: true,
    // The runtime settings the board's systemd unit uses (scripts/make_unit.ts, scripts/derive_permissions.ts).
    env: { OUTPOST_LOG: "off", MALLOC_ARENA_MAX: "2", ...benchEnv() },
    onLine: (line) => {
      const gc = /: (?:Scavenge|Mark-Compact|Mark-sweep|Minor Mark[^ ]*)\S*\s+([\d.]+) \([\d.]+\) -> ([\d.]+)/
        .exec(line);
      if (gc) {
        gcs++;
        freedMb += Math.max(0, Number(gc[1]) - Number(gc[2]));
      } else if (line.startsWith("BENCH ")) replies.shift()?.(line.slice(6));
    },
  });
  const port = Number((await child.waitLine(/^PORT (\d+)/))[1]);
  return {
    name: "outpost",
    pid: child.pid,
    cpuPid: child.pid,
    port,
    user,
    password,
    url: urlFor(user, password, port),
    heap: async (gc) => {
      const reply = new Promise<string>((resolve) => replies.push(resolve));
      await child.send(gc ? "gcmem" : "mem");
      return JSON.parse(await reply);
    },
    gcCount: () => gcs,
    gcFreedMb: () => freedMb,
    stop: async () => {
      replies = [];
      await child.stop();
    },
  };
}

async function startVsftpd(root: string, tmp: string): Promise<BenchFtpServer> {
  // vsftpd has no "port 0": pick a free port and retry on a clash.
  for (let attempt = 0; attempt < 5; attempt++) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const empty = `${tmp}/vsftpd-empty`;
    await Deno.mkdir(empty, { recursive: true, mode: 0o755 });
    const conf = `${tmp}/vsftpd.conf`;
    await Deno.writeTextFile(
      conf,
      [
        "listen=YES",
        "listen_address=127.0.0.1",
        `listen_port=${port}`,
        "background=NO",
        "anonymous_enable=YES",
        "local_enable=NO",
        `anon_root=${root}`,
        "no_anon_password=YES",
        "write_enable=YES",
        "anon_upload_enable=YES",
        "anon_mkdir_write_enable=YES",
        "anon_other_write_enable=YES",
        // The session runs as "daemon" (home /usr/sbin exists), the privsep helper as "nobody".
        "ftp_username=daemon",
        "nopriv_user=nobody",
        `secure_chroot_dir=${empty}`,
        "seccomp_sandbox=NO",
        "xferlog_enable=NO",
        "dirmessage_enable=NO",
        "max_clients=0",
        "max_per_ip=0",
        "",
      ].join("\n"),
    );
    const child = BenchChild.spawn(SYSTEM_PYTHON, {
      args: [`${HERE}subreaper.py`, "/usr/sbin/vsftpd", conf],
    });
    const pid = Number((await child.waitLine(/^CHILD (\d+)/))[1]);
    // Ready when it accepts a connection.
    let up = false;
    for (let i = 0; i < 50 && !up; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        c.close();
        up = true;
      } catch {
        // Not yet.
      }
    }
    if (!up) {
      await child.stop();
      continue;
    }
    return {
      name: "vsftpd",
      pid,
      cpuPid: child.pid,
      port,
      user: "anonymous",
      password: "bench@example.com",
      url: urlFor("anonymous", "bench@example.com", port),
      stop: () => child.stop(),
    };
  }
  throw new Error("vsftpd did not start: no free port accepted connections after 5 attempts.");
}

async function startPyftpdlib(root: string): Promise<BenchFtpServer> {
  const user = "bench";
  const password = "bench-pw";
  const child = BenchChild.spawn(SYSTEM_PYTHON, { args: [`${HERE}pyftpd_server.py`, root, user, password] });
  const port = Number((await child.waitLine(/^PORT (\d+)/))[1]);
  return {
    name: "pyftpdlib",
    pid: child.pid,
    cpuPid: child.pid,
    port,
    user,
    password,
    url: urlFor(user, password, port),
    stop: () => child.stop(),
  };
}

/**
 * Starts one server on `root`; `tmp` holds its temporary config.
 *
 * @example
 * ```ts
 * const server = await startFtpServer("vsftpd", "/tmp/bench/root", "/tmp/bench");
 * await server.stop();
 * ```
 */
export function startFtpServer(name: FtpServerName, root: string, tmp: string): Promise<BenchFtpServer> {
  if (name === "outpost") return startOutpost(root);
  if (name === "vsftpd") return startVsftpd(root, tmp);
  return startPyftpdlib(root);
}

/** Extra V8 flags for the outpost server from `OUTPOST_BENCH_V8_FLAGS` (experiments, e.g. the board unit's flags). */
function extraV8Flags(): string {
  const extra = Deno.env.get("OUTPOST_BENCH_V8_FLAGS") ?? "";
  return extra ? `,${extra}` : "";
}

/** Experiment switches passed through to the outpost bench server (`OUTPOST_BENCH_*`). */
function benchEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) if (k.startsWith("OUTPOST_BENCH_")) out[k] = v;
  return out;
}
