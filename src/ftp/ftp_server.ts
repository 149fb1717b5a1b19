/**
 * The FTP server: the control-connection listener, session and per-address limits, temporary bans after failed
 * logins, the xferlog, and an orderly close.
 *
 * Control connections are accepted with `node:net` (paused on connect) so an FTPS upgrade can later wrap the raw
 * socket; data connections use Deno's own sockets (see `data_channel.ts`).
 *
 * @module
 */

import { createServer, type Server, type Socket } from "node:net";
import { Logger } from "../log/logger.ts";
import { NodeConn } from "../net/node_conn.ts";
import { type ServerTlsContext, type TlsConn, upgradeServerSocket } from "../net/tls_server.ts";
import { loadFtpTlsContext } from "./ftps.ts";
import { normalizeIp } from "./address.ts";
import { FtpSession, type SessionContext, type XferEntry } from "./ftp_session.ts";
import { type FtpServerOptions, LIMIT_DEFAULTS } from "./ftp_options.ts";

export { defaultFtpServerOptions, type FtpServerOptions } from "./ftp_options.ts";
import { BufferPool, TRANSFER_BUFFER_SIZE } from "./transfer.ts";
import { isUploadInProgress, UPLOAD_TEMP_PREFIX } from "./ftp_file_system.ts";

/**
 * Failed-login counts and temporary bans per address, bounded. Under table pressure it forgets, in this order,
 * entries whose ban has expired, then the least recently failed addresses that are not banned, and an active
 * ban (the one ending soonest) only when every entry is one.
 */
export class BanTable {
  readonly #max: number;
  /** Least recently failed first (an entry moves to the end at each failure). */
  readonly #entries = new Map<string, { fails: number; until: number }>();

  /**
   * Makes a table holding at most `max` addresses.
   *
   * @example
   * ```ts
   * const bans = new BanTable(10_000);
   * console.log(bans.isBanned("192.168.1.7", Date.now())); // false
   * ```
   */
  constructor(max: number) {
    this.#max = max;
  }

  /** Addresses in the table. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * True while `ip` is banned.
   *
   * @example
   * ```ts
   * declare const bans: BanTable; // the server's ban table
   * declare function refuse(): void; // closes the connection
   * if (bans.isBanned("192.168.1.7", Date.now())) refuse();
   * ```
   */
  isBanned(ip: string, now: number): boolean {
    const e = this.#entries.get(ip);
    if (!e || e.until === 0) return false;
    if (now < e.until) return true;
    this.#entries.delete(ip);
    return false;
  }

  /**
   * Counts a failed login from `ip`; true when the address is (now) banned.
   *
   * @example
   * ```ts
   * declare const bans: BanTable; // the server's ban table
   * const banned = bans.fail("192.168.1.7", Date.now(), 5, 300_000);
   * console.log(banned); // true on the fifth failure
   * ```
   */
  fail(ip: string, now: number, maxFailures: number, banMs: number): boolean {
    const e = this.#entries.get(ip) ?? { fails: 0, until: 0 };
    this.#entries.delete(ip);
    this.#entries.set(ip, e);
    if (e.until !== 0 && now >= e.until) {
      e.until = 0;
      e.fails = 0;
    }
    if (e.until === 0) {
      e.fails++;
      if (e.fails >= maxFailures) {
        e.until = now + banMs;
        e.fails = 0;
      }
    }
    while (this.#entries.size > this.#max) this.#evict(now, ip);
    return e.until !== 0;
  }

  #evict(now: number, keep: string): void {
    let soonest: string | null = null;
    let soonestUntil = Infinity;
    let firstUnbanned: string | null = null;
    for (const [ip, e] of this.#entries) {
      if (ip === keep) continue;
      if (e.until !== 0 && now >= e.until) {
        this.#entries.delete(ip);
        return;
      }
      if (e.until === 0) {
        firstUnbanned ??= ip;
        // The oldest non-banned entry is the least recently failed; expired bans later in the map still win.
        continue;
      }
      if (e.until < soonestUntil) {
        soonestUntil = e.until;
        soonest = ip;
      }
    }
    const victim = firstUnbanned ?? soonest;
    if (victim !== null) this.#entries.delete(victim);
    else this.#entries.clear();
  }

  /**
   * Failed logins counted for `ip` since its last ban or good login (0 when unknown).
   *
   * @example
   * ```ts
   * declare const bans: BanTable; // the server's ban table
   * bans.failures("192.168.1.7"); // 2
   * ```
   */
  failures(ip: string): number {
    return this.#entries.get(ip)?.fails ?? 0;
  }

  /**
   * Forgets the failures of `ip` after a good login; an active ban stays.
   *
   * @example
   * ```ts
   * declare const bans: BanTable; // the server's ban table
   * bans.succeeded("192.168.1.7", Date.now());
   * ```
   */
  succeeded(ip: string, now: number): void {
    if (!this.isBanned(ip, now)) this.#entries.delete(ip);
  }
}

/**
 * A counting semaphore with a bounded queue, for CPU-heavy work (password hashing) shared by all sessions.
 *
 * @example
 * ```ts
 * import type { Accounts } from "./accounts.ts";
 *
 * declare const accounts: Accounts; // see Accounts
 * declare const name: string; // from USER
 * declare const pass: string; // from PASS
 * declare function reply(text: string): Promise<void>; // sends a control reply
 * const checks = new WorkGate(2, 32, 4);
 * const r = await checks.run("192.168.1.7", () => accounts.authenticate(name, pass));
 * if (r === WorkGate.FULL) await reply("421 Too many logins in progress; try again later.");
 * ```
 */
export class WorkGate {
  /** What {@link WorkGate.run} returns when the queue is full. */
  static readonly FULL: unique symbol = Symbol("full");
  readonly #slots: number;
  readonly #maxQueued: number;
  readonly #maxPerKey: number;
  #running = 0;
  readonly #queue: { priority: number; seq: number; resolve: () => void }[] = [];
  #seq = 0;
  readonly #perKey = new Map<string, number>();

  /**
   * `slots` jobs run at once; up to `maxQueued` wait; one key (address) may hold at most `maxPerKey` of both.
   *
   * @example
   * ```ts
   * const gate = new WorkGate(2, 32, 4);
   * console.log(await gate.run("192.168.1.7", () => Promise.resolve("done"))); // "done"
   * ```
   */
  constructor(slots: number, maxQueued: number, maxPerKey: number) {
    this.#slots = Math.max(1, slots);
    this.#maxQueued = maxQueued;
    this.#maxPerKey = maxPerKey;
  }

  /** Jobs running now. */
  get running(): number {
    return this.#running;
  }

  /**
   * Runs `job` when a slot is free; {@link WorkGate.FULL} at once when the queue (or the key's share) is full.
   * Waiting jobs start lowest `priority` first (the server passes the address's recent failed logins, so a
   * password storm queues behind a client that has not failed), then in arrival order.
   *
   * @example
   * ```ts
   * import type { Accounts } from "./accounts.ts";
   *
   * declare const gate: WorkGate; // the password-check gate
   * declare const accounts: Accounts; // see Accounts
   * declare const ip: string; // the client address
   * declare const name: string; // from USER
   * declare const pass: string; // from PASS
   * const user = await gate.run(ip, () => accounts.authenticate(name, pass));
   * console.log(user === WorkGate.FULL ? "busy" : user?.name);
   * ```
   */
  async run<T>(key: string, job: () => Promise<T>, priority = 0): Promise<T | typeof WorkGate.FULL> {
    const mine = this.#perKey.get(key) ?? 0;
    if (mine >= this.#maxPerKey) return WorkGate.FULL;
    if (this.#running >= this.#slots && this.#queue.length >= this.#maxQueued) return WorkGate.FULL;
    this.#perKey.set(key, mine + 1);
    try {
      if (this.#running >= this.#slots) {
        await new Promise<void>((resolve) => {
          // Lower priority first, then first come first served.
          const entry = { priority, seq: this.#seq++, resolve };
          let i = this.#queue.length;
          while (i > 0 && this.#queue[i - 1].priority > priority) i--;
          this.#queue.splice(i, 0, entry);
        });
      } else {
        this.#running++;
      }
      try {
        return await job();
      } finally {
        const next = this.#queue.shift();
        if (next) next.resolve(); // the slot passes straight to the next job
        else this.#running--;
      }
    } finally {
      const n = (this.#perKey.get(key) ?? 1) - 1;
      if (n <= 0) this.#perKey.delete(key);
      else this.#perKey.set(key, n);
    }
  }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/**
 * Formats one xferlog line (wu-ftpd format): current-time transfer-time remote-host file-size filename
 * transfer-type special-action direction access-mode username service-name authentication-method
 * authenticated-user-id completion-status.
 *
 * @example
 * ```ts
 * formatXferlogLine({ ip: "127.0.0.1", user: "bob", anonymous: false, path: "/a.txt", bytes: 3, ms: 10,
 *   ascii: false, incoming: false, complete: true }, new Date());
 * ```
 */
export function formatXferlogLine(e: XferEntry, now: Date): string {
  const p2 = (n: number) => String(n).padStart(2, "0");
  const date = `${DAYS[now.getDay()]} ${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, " ")} ` +
    `${p2(now.getHours())}:${p2(now.getMinutes())}:${p2(now.getSeconds())} ${now.getFullYear()}`;
  // deno-lint-ignore no-control-regex
  const clean = (s: string) => s.replace(/[\s\x00-\x1f\x7f]/g, "_") || "_";
  return [
    date,
    Math.max(1, Math.round(e.ms / 1000)),
    e.ip,
    e.bytes,
    clean(e.path),
    e.ascii ? "a" : "b",
    "_",
    e.incoming ? "i" : "o",
    e.anonymous ? "a" : "r",
    clean(e.user),
    "ftp",
    "0",
    "*",
    e.complete ? "c" : "i",
  ].join(" ");
}

/** One listening port (the control port or the implicit FTPS port) and the `node:net` server behind it. */
interface Listener {
  readonly implicitTls: boolean;
  readonly host: string;
  /** The bound port (the configured one, or the one picked for port 0). */
  port: number;
  /** null while it is being re-created (after the old one stopped accepting). */
  server: Server | null;
  /** The last self-check saw it accept. */
  accepting: boolean;
}

/**
 * Removes upload temp files (`.outpost-upload-*`) older than `before` under the users' roots: what a kill -9 or
 * power cut left behind mid-upload. Symlinked folders are not entered; resolves to the number removed.
 *
 * @example
 * ```ts
 * const removed = await sweepUploadTemps(["/srv/ftp"], Date.now());
 * console.log(`${removed} stale upload temps removed`);
 * ```
 */
export async function sweepUploadTemps(roots: string[], before: number): Promise<number> {
  let removed = 0;
  const stack: { dir: string; depth: number }[] = [...new Set(roots)].map((dir) => ({ dir, depth: 0 }));
  for (let guard = 0; stack.length > 0 && guard < 1_000_000; guard++) {
    const { dir, depth } = stack.pop()!;
    try {
      for await (const e of Deno.readDir(dir)) {
        const path = `${dir === "/" ? "" : dir}/${e.name}`;
        if (e.isDirectory && depth < 64) stack.push({ dir: path, depth: depth + 1 });
        else if (e.isFile && e.name.startsWith(UPLOAD_TEMP_PREFIX) && !isUploadInProgress(e.name)) {
          try {
            const st = await Deno.lstat(path);
            if (st.isFile && (st.mtime?.getTime() ?? 0) < before) {
              await Deno.remove(path);
              removed++;
            }
          } catch {
            // Finished or removed meanwhile.
          }
        }
      }
    } catch {
      // Unreadable or gone: skip it.
    }
  }
  return removed;
}

/** How long a self-check waits for its own connection to be accepted. */
const PROBE_TIMEOUT_MS = 3000;
/** A probe timer this late means the process was stalled, not the listener. */
const PROBE_STALL_MS = 500;

function bindServer(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once("error", onError);
    server.listen({ host, port }, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/**
 * Stops a listener from accepting and frees its port at once. (`server.close(cb)` calls back only after every
 * connection it accepted has ended, so it is not awaited here.)
 */
async function stopListening(server: Server): Promise<void> {
  try {
    server.close();
  } catch {
    // Not listening any more.
  }
  await new Promise((r) => setTimeout(r, 0));
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      server.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

/** The address a self-check connects to for a listener bound to `host` (loopback for the wildcards). */
function probeHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "::1";
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

/**
 * Upper bound of the file descriptors the FTP server holds with `opts` (control and data sockets, passive
 * listeners, open files, handshakes), plus room for the rest of the daemon: what `LimitNOFILE=` should allow.
 *
 * @example
 * ```ts
 * const nofile = ftpFileLimit({ maxSessions: 300 }); // 2048 (the defaults)
 * console.log(nofile);
 * ```
 */
export function ftpFileLimit(opts: Partial<Pick<FtpServerOptions, "maxSessions" | "maxHandshakes">>): number {
  const perSession = 4; // control socket, passive listener, data socket, open file
  const handshakes = opts.maxHandshakes ?? LIMIT_DEFAULTS.maxHandshakes;
  const need = (opts.maxSessions ?? 300) * perSession + handshakes + 512;
  let n = 1024;
  while (n < need) n *= 2;
  return n;
}

/**
 * What {@link FtpServer.status} reports.
 *
 * @example
 * ```ts
 * declare const server: FtpServer; // listening
 * const st: FtpServerStatus = server.status();
 * for (const s of st.sessions) if (s.transfer) console.log(s.user, s.transfer.path, s.transfer.bytes);
 * ```
 */
export interface FtpServerStatus {
  /** Bound listeners: the control port (tls = the `[ftp.tls] mode`) and the implicit FTPS port. */
  listeners: { host: string; port: number; tls: string }[];
  /** Open control connections; `transfer` is the running transfer or null. */
  sessions: {
    id: number;
    ip: string;
    user: string | null;
    tls: boolean;
    since: number;
    idleMs: number;
    transfer: { kind: string; path: string; bytes: number; started: number } | null;
  }[];
  /** Totals since the server started (file transfers only, not listings). */
  counters: {
    sessions: number;
    transfersOk: number;
    transfersFailed: number;
    bytesIn: number;
    bytesOut: number;
    loginFailures: number;
  };
}

/**
 * An FTP server.
 *
 * Limits that keep the listeners alive against hostile clients: sessions (total and per address), connections
 * that have not logged in yet (total and per address, with a login timeout), TLS handshakes in progress on the
 * implicit port (total and per address), and a self-check that connects to each of its own ports every
 * `selfCheckMs` and re-creates a listener that stopped accepting (Deno's `node:net` listener never accepts
 * again after an EMFILE/ENFILE). {@link FtpServer.isAccepting} says whether the last check passed, so the
 * systemd watchdog can stop pinging a wedged daemon.
 *
 * @example
 * ```ts
 * import type { Accounts } from "./accounts.ts";
 *
 * declare const accounts: Accounts; // see Accounts
 * const server = new FtpServer({ ...defaultFtpServerOptions(accounts), hostname: "127.0.0.1", port: 0 });
 * await server.listen();
 * console.log(`listening on ${server.port}`);
 * await server.close();
 * ```
 */
export class FtpServer {
  readonly #opts: FtpServerOptions;
  readonly #log = new Logger("ftp");
  readonly #sessions = new Map<FtpSession, Promise<void>>();
  readonly #handshakes = new Set<Promise<void>>();
  readonly #handshakesPerIp = new Map<string, number>();
  readonly #perIp = new Map<string, number>();
  /** Passive ports held (listening, not yet connected) per address, against its share of the range. */
  readonly #passiveHeld = new Map<string, number>();
  readonly #bans = new BanTable(10_000);
  readonly #passwordChecks: WorkGate;
  readonly #buffers: BufferPool;
  readonly #ctx: SessionContext;
  readonly #listeners: Listener[] = [];
  /** Local ports of self-check connections in flight, and what to call when one is accepted. */
  readonly #probes = new Map<number, () => void>();
  /** Settles once the self-check connection in flight (if any) has its local port in `#probes`. */
  #probeConnecting: Promise<void> | null = null;
  #checking: Promise<boolean> | null = null;
  #probeDenied = false;
  #port = 0;
  #nextId = 1;
  #timer: ReturnType<typeof setInterval> | undefined;
  #checkTimer: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  #xferChain: Promise<void> = Promise.resolve();
  #swept: Promise<number> = Promise.resolve(0);
  #counters: FtpServerStatus["counters"] = {
    sessions: 0,
    transfersOk: 0,
    transfersFailed: 0,
    bytesIn: 0,
    bytesOut: 0,
    loginFailures: 0,
  };

  /**
   * Makes a server; nothing is bound or loaded until {@link FtpServer.listen}. The options object is kept,
   * not copied.
   *
   * @example
   * ```ts
   * import type { Accounts } from "./accounts.ts";
   *
   * declare const accounts: Accounts; // see Accounts
   * const server = new FtpServer(defaultFtpServerOptions(accounts));
   * await server.listen();
   * ```
   */
  constructor(opts: FtpServerOptions) {
    this.#opts = opts;
    // Everything admitted (the unauthenticated limits) may queue: the gate only serializes the hashing.
    this.#passwordChecks = new WorkGate(
      opts.maxPasswordChecks ?? 1,
      opts.maxUnauthenticated ?? LIMIT_DEFAULTS.maxUnauthenticated,
      opts.maxUnauthenticatedPerIp ?? LIMIT_DEFAULTS.maxUnauthenticatedPerIp,
    );
    this.#buffers = new BufferPool(
      opts.transferBufferSize ?? TRANSFER_BUFFER_SIZE,
      4,
      opts.largeTransferBufferSize,
      opts.largeTransferBuffers,
    );
    this.#ctx = {
      opts,
      log: this.#log,
      buffers: this.#buffers,
      loginFailed: (ip) => this.#bans.fail(ip, Date.now(), this.#opts.maxLoginFailures, this.#opts.banMs),
      loginSucceeded: (ip) => this.#bans.succeeded(ip, Date.now()),
      isBanned: (ip) => this.#bans.isBanned(ip, Date.now()),
      checkPassword: (ip, job) => this.#passwordChecks.run(ip, job, this.#bans.failures(ip)),
      unauthenticatedTlsFrom: (ip, self) => {
        if ((this.#handshakesPerIp.get(ip) ?? 0) > 0) return true;
        for (const s of this.#sessions.keys()) {
          if (s !== self && s.peerIp === ip && s.tlsControl && s.state.kind !== "logged-in") return true;
        }
        return false;
      },
      logoutRefusal: (ip) => {
        const o = this.#opts;
        const u = this.#unauthenticated(ip);
        if (u.total >= (o.maxUnauthenticated ?? LIMIT_DEFAULTS.maxUnauthenticated)) {
          return "max_unauthenticated";
        }
        if (u.fromIp >= (o.maxUnauthenticatedPerIp ?? LIMIT_DEFAULTS.maxUnauthenticatedPerIp)) {
          return "max_unauthenticated_per_ip";
        }
        return null;
      },
      holdPassive: (ip) => {
        // With a port range, one address may hold at most half of it at once, so it cannot starve the others.
        const { portMin, portMax } = this.#opts.passive;
        if (portMin === 0 && portMax === 0) return () => {};
        const share = Math.max(1, Math.floor((portMax - portMin + 1) / 2));
        const held = this.#passiveHeld.get(ip) ?? 0;
        if (held >= share) {
          this.#log.warn("passive.share_used", { ip, held, share });
          return null;
        }
        this.#passiveHeld.set(ip, held + 1);
        let given = false;
        return () => {
          if (given) return;
          given = true;
          const n = (this.#passiveHeld.get(ip) ?? 1) - 1;
          if (n <= 0) this.#passiveHeld.delete(ip);
          else this.#passiveHeld.set(ip, n);
        };
      },
      xferlog: (e) => this.#xferlog(e),
      tls: null,
    };
    // Count failed logins for `outpost status` and /metrics.
    const loginFailed = this.#ctx.loginFailed;
    this.#ctx.loginFailed = (ip) => {
      this.#counters.loginFailures++;
      return loginFailed(ip);
    };
  }

  /** The implicit FTPS port (after {@link FtpServer.listen}), or null when there is none. */
  get implicitPort(): number | null {
    return this.#listeners.find((l) => l.implicitTls)?.port ?? null;
  }

  /** The port the server listens on (after {@link FtpServer.listen}). */
  get port(): number {
    return this.#port;
  }

  /** The address the server listens on. */
  get hostname(): string {
    return this.#opts.hostname;
  }

  /** Settles when the start-up sweep of stale upload temp files is done, with how many it removed. */
  get sweepDone(): Promise<number> {
    return this.#swept;
  }

  /** Open control connections. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * True while every listener accepted at its last self-check (and the server is listening): what the systemd
   * watchdog asks before each ping. A listener that stopped accepting is re-created at the next check; while
   * that fails (the process is still out of file descriptors) this stays false.
   *
   * @example
   * ```ts
   * import type { SystemdNotifier } from "../daemon/systemd_notify.ts";
   *
   * declare const server: FtpServer; // listening
   * declare const notifier: SystemdNotifier; // see SystemdNotifier
   * setInterval(() => { if (server.isAccepting()) notifier.send("WATCHDOG=1"); }, 30_000);
   * ```
   */
  isAccepting(): boolean {
    return !this.#closing && this.#listeners.length > 0 && this.#listeners.every((l) => l.accepting);
  }

  /**
   * Runs a self-check now: connects to each listener's own port, re-creates any that did not accept, and
   * resolves to {@link FtpServer.isAccepting} afterwards.
   *
   * @example
   * ```ts
   * declare const server: FtpServer; // listening
   * if (!(await server.checkAccepting())) console.log("a listener is wedged");
   * ```
   */
  checkAccepting(): Promise<boolean> {
    this.#checking ??= this.#selfCheck().finally(() => this.#checking = null);
    return this.#checking;
  }

  /**
   * Starts listening; rejects when an address cannot be bound. A failure leaves nothing bound (a half-started
   * implicit FTPS listener is closed again), so a reload can put the previous server back.
   */
  async listen(): Promise<void> {
    if (this.#listeners.length > 0) throw new Error("FTP server not started: it is already listening.");
    try {
      const tlsOpts = this.#opts.tls;
      if (tlsOpts && tlsOpts.mode !== "off") {
        const context: ServerTlsContext = await loadFtpTlsContext(tlsOpts, this.#log);
        this.#ctx.tls = { opts: tlsOpts, context };
        if (tlsOpts.implicitPort !== null) {
          const host = tlsOpts.implicitHost ?? this.#opts.hostname;
          try {
            await this.#addListener(true, host, tlsOpts.implicitPort);
          } catch (e) {
            throw new Error(
              `Implicit FTPS not started on port ${tlsOpts.implicitPort}: ${(e as Error).message}`,
            );
          }
          this.#log.info("listening.implicit_tls", { host, port: this.implicitPort });
        }
      }
      try {
        this.#port = (await this.#addListener(false, this.#opts.hostname, this.#opts.port)).port;
      } catch (e) {
        throw new Error(`FTP server not started: ${(e as Error).message}`);
      }
    } catch (e) {
      const bound = this.#listeners.splice(0);
      await Promise.all(bound.map((l) => l.server ? stopListening(l.server) : Promise.resolve()));
      this.#ctx.tls = null;
      throw e;
    }
    const period = Math.max(
      50,
      Math.min(1000, Math.floor(Math.min(this.#opts.idleTimeoutMs, this.#opts.dataTimeoutMs) / 4)),
    );
    this.#timer = setInterval(() => {
      const now = Date.now();
      for (const s of this.#sessions.keys()) s.tick(now);
    }, period);
    const started = Date.now();
    this.#swept = sweepUploadTemps(this.#opts.accounts.users.map((u) => u.root), started).then((n) => {
      if (n > 0) this.#log.info("upload_temps.swept", { removed: n });
      return n;
    });
    const every = this.#opts.selfCheckMs ?? LIMIT_DEFAULTS.selfCheckMs;
    if (every > 0) {
      this.#checkTimer = setInterval(() => void this.checkAccepting(), every);
      // Once at start too: a sandbox that refuses the check shows in the log at once.
      void this.checkAccepting();
    }
    this.#log.info("listening", { host: this.#opts.hostname, port: this.#port });
  }

  async #addListener(implicitTls: boolean, host: string, port: number): Promise<Listener> {
    const server = this.#makeServer(implicitTls);
    await bindServer(server, host, port);
    const a = server.address();
    const l: Listener = {
      implicitTls,
      host,
      port: typeof a === "object" && a ? a.port : port,
      server,
      accepting: true,
    };
    server.on("error", (e) => this.#log.error("listener.error", { port: l.port, error: String(e) }));
    this.#listeners.push(l);
    return l;
  }

  #makeServer(implicitTls: boolean): Server {
    return createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket, implicitTls));
  }

  async #selfCheck(): Promise<boolean> {
    for (const l of this.#listeners) {
      if (this.#closing) break;
      // A second probe before any verdict: one lost to a moment of load must not re-create a working listener.
      if (l.server && ((await this.#probe(l)) || (!this.#closing && await this.#probe(l)))) {
        if (!l.accepting) this.#log.info("listener.recovered", { port: l.port });
        l.accepting = true;
        continue;
      }
      if (this.#closing) break;
      // Not accepting: Deno's node:net listener does not resume after EMFILE/ENFILE, so make a new one.
      l.accepting = false;
      const old = l.server;
      l.server = null;
      if (old) {
        this.#log.error("listener.wedged", { port: l.port, note: "re-creating the listener" });
        await stopListening(old);
      }
      const fresh = this.#makeServer(l.implicitTls);
      try {
        await bindServer(fresh, l.host, l.port);
      } catch (e) {
        this.#log.error("listener.rebind_failed", { port: l.port, error: (e as Error).message });
        continue;
      }
      if (this.#closing) {
        await stopListening(fresh);
        break;
      }
      fresh.on("error", (e) => this.#log.error("listener.error", { port: l.port, error: String(e) }));
      l.server = fresh;
      l.accepting = await this.#probe(l);
      if (l.accepting) this.#log.info("listener.recovered", { port: l.port });
    }
    return this.isAccepting();
  }

  /** Connects to the listener's own port; true when the connection is accepted within the probe timeout. */
  async #probe(l: Listener): Promise<boolean> {
    let accepted!: () => void;
    const seen = new Promise<boolean>((resolve) => accepted = () => resolve(true));
    const connecting = Deno.connect({ hostname: probeHost(l.host), port: l.port });
    let localPort = -1;
    this.#probeConnecting = connecting.then((c) => {
      localPort = c.localAddr.port;
      this.#probes.set(localPort, accepted);
    }, () => {});
    let conn: Deno.TcpConn | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timeout = new Promise<boolean>((resolve) => {
        const arm = (retries: number) => {
          const t0 = performance.now();
          timer = setTimeout(() => {
            // Fired late: the event loop (or the machine) was stalled, and the accept may be queued behind this
            // timer. That is no verdict on the listener: wait again (bounded).
            const late = performance.now() - t0 - PROBE_TIMEOUT_MS;
            if (late > PROBE_STALL_MS && retries > 0) arm(retries - 1);
            else resolve(false);
          }, PROBE_TIMEOUT_MS);
        };
        arm(2);
      });
      conn = await Promise.race([connecting, timeout.then(() => null)]);
      if (conn === null) {
        connecting.then((c) => c.close(), () => {});
        return false;
      }
      await this.#probeConnecting;
      return await Promise.race([seen, timeout]);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        // The sandbox does not let this process connect to its own port: the check cannot tell, so it never
        // reports a wedge it did not see (that would stop the watchdog and restart a healthy daemon).
        if (!this.#probeDenied) {
          this.#log.warn("listener.self_check_unavailable", { port: l.port, error: String(e) });
        }
        this.#probeDenied = true;
        return true;
      }
      // Refused, or this process is out of file descriptors itself.
      return false;
    } finally {
      clearTimeout(timer);
      this.#probeConnecting = null;
      this.#probes.delete(localPort);
      try {
        conn?.close();
      } catch {
        // Already closed.
      }
    }
  }

  #refuse(socket: Socket, reply: string): void {
    socket.on("error", () => {});
    const timer = setTimeout(() => socket.destroy(), 1000);
    socket.once("close", () => clearTimeout(timer));
    socket.end(reply + "\r\n", () => socket.destroy());
  }

  /** Connections not logged in yet (sessions before login plus TLS handshakes), in total and from `ip`. */
  #unauthenticated(ip: string): { total: number; fromIp: number } {
    let total = this.#handshakes.size;
    let fromIp = this.#handshakesPerIp.get(ip) ?? 0;
    for (const s of this.#sessions.keys()) {
      if (s.state.kind === "logged-in") continue;
      total++;
      if (s.peerIp === ip) fromIp++;
    }
    return { total, fromIp };
  }

  /** Why a new connection from `ip` must be refused, or null. */
  #refusal(ip: string, implicitTls: boolean): string | null {
    const o = this.#opts;
    if (this.#closing) return "shutting_down";
    if (this.#bans.isBanned(ip, Date.now())) return "banned";
    if (this.#sessions.size + this.#handshakes.size >= o.maxSessions) return "max_sessions";
    if ((this.#perIp.get(ip) ?? 0) >= o.maxSessionsPerIp) return "max_sessions_per_ip";
    const u = this.#unauthenticated(ip);
    if (u.total >= (o.maxUnauthenticated ?? LIMIT_DEFAULTS.maxUnauthenticated)) return "max_unauthenticated";
    if (u.fromIp >= (o.maxUnauthenticatedPerIp ?? LIMIT_DEFAULTS.maxUnauthenticatedPerIp)) {
      return "max_unauthenticated_per_ip";
    }
    if (implicitTls) {
      if (this.#handshakes.size >= (o.maxHandshakes ?? LIMIT_DEFAULTS.maxHandshakes)) return "max_handshakes";
      if (
        (this.#handshakesPerIp.get(ip) ?? 0) >= (o.maxHandshakesPerIp ?? LIMIT_DEFAULTS.maxHandshakesPerIp)
      ) {
        return "max_handshakes_per_ip";
      }
    }
    return null;
  }

  #accept(socket: Socket, implicitTls: boolean): void {
    socket.on("error", () => {});
    const peerIp = normalizeIp(socket.remoteAddress ?? "");
    const localIp = normalizeIp(socket.localAddress ?? this.#opts.hostname);
    const remotePort = socket.remotePort ?? -1;
    const probing = this.#probeConnecting;
    if (probing !== null && peerIp === localIp) {
      // Maybe the self-check's own connection: decide once its local port is known.
      probing.then(() => this.#acceptChecked(socket, implicitTls, peerIp, localIp, remotePort));
      return;
    }
    this.#acceptChecked(socket, implicitTls, peerIp, localIp, remotePort);
  }

  #acceptChecked(
    socket: Socket,
    implicitTls: boolean,
    peerIp: string,
    localIp: string,
    remotePort: number,
  ): void {
    const probe = peerIp === localIp ? this.#probes.get(remotePort) : undefined;
    if (probe) {
      probe();
      socket.destroy();
      return;
    }
    const reason = this.#refusal(peerIp, implicitTls);
    if (implicitTls) {
      // No plaintext may be sent on an implicit-TLS port: refusals just close.
      if (reason) {
        this.#log.info("session.refused", { ip: peerIp, reason, tls: "implicit" });
        socket.destroy();
        return;
      }
      const tls = this.#ctx.tls!;
      this.#perIp.set(peerIp, (this.#perIp.get(peerIp) ?? 0) + 1);
      this.#handshakesPerIp.set(peerIp, (this.#handshakesPerIp.get(peerIp) ?? 0) + 1);
      socket.setNoDelay(true);
      const pending = upgradeServerSocket(socket, tls.context, {
        timeoutMs: Math.min(this.#opts.dataTimeoutMs, this.#loginTimeoutMs()),
      }).then(
        (conn) => {
          this.#handshakeDone(peerIp);
          if (this.#closing) {
            conn.close();
            this.#release(peerIp);
            return;
          }
          this.#startSession(conn, peerIp, localIp, true);
        },
        (e) => {
          this.#handshakeDone(peerIp);
          this.#release(peerIp);
          this.#log.info("tls.handshake_failed", { ip: peerIp, error: (e as Error).message });
        },
      );
      this.#handshakes.add(pending);
      pending.finally(() => this.#handshakes.delete(pending));
      return;
    }
    if (reason) {
      this.#log.info("session.refused", { ip: peerIp, reason });
      this.#refuse(socket, REFUSAL_REPLIES[reason] ?? "421 Service not available; try again later.");
      return;
    }
    this.#perIp.set(peerIp, (this.#perIp.get(peerIp) ?? 0) + 1);
    // Replies are small and often back to back (150 then 226): without this, Nagle's algorithm and the client's
    // delayed ACK add ~40 ms per transfer.
    socket.setNoDelay(true);
    this.#startSession(new NodeConn(socket), peerIp, localIp, false);
  }

  #loginTimeoutMs(): number {
    return this.#opts.loginTimeoutMs ?? LIMIT_DEFAULTS.loginTimeoutMs;
  }

  #handshakeDone(ip: string): void {
    const n = (this.#handshakesPerIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.#handshakesPerIp.delete(ip);
    else this.#handshakesPerIp.set(ip, n);
  }

  #startSession(conn: NodeConn | TlsConn, peerIp: string, localIp: string, implicitTls: boolean): void {
    const session = new FtpSession(this.#nextId++, conn, peerIp, localIp, this.#ctx, { implicitTls });
    this.#counters.sessions++;
    const done = session.run().finally(() => {
      this.#sessions.delete(session);
      this.#release(peerIp);
    });
    this.#sessions.set(session, done);
  }

  #release(peerIp: string): void {
    const n = (this.#perIp.get(peerIp) ?? 1) - 1;
    if (n <= 0) this.#perIp.delete(peerIp);
    else this.#perIp.set(peerIp, n);
  }

  #xferlog(e: XferEntry): void {
    const c = this.#counters;
    if (e.incoming) c.bytesIn += e.bytes;
    else c.bytesOut += e.bytes;
    if (e.complete) c.transfersOk++;
    else c.transfersFailed++;
    const path = this.#opts.xferlogPath;
    if (!path) return;
    const line = formatXferlogLine(e, new Date()) + "\n";
    this.#xferChain = this.#xferChain.then(() => Deno.writeTextFile(path, line, { append: true })).catch(
      (err) => {
        this.#log.warn("xferlog.error", { error: String(err) });
      },
    );
  }

  /**
   * Stops accepting, lets sessions finish for up to `graceMs`, then ends the rest with 421 and closes everything.
   */
  async close(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearInterval(this.#checkTimer);
    await this.#checking;
    const closed = Promise.all(
      this.#listeners.map((l) => l.server ? closeServer(l.server) : Promise.resolve()),
    );
    await Promise.all(this.#handshakes);
    const grace = opts.graceMs ?? 0;
    if (grace > 0 && this.#sessions.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(this.#sessions.values()),
        new Promise<void>((resolve) => timer = setTimeout(resolve, grace)),
      ]);
      clearTimeout(timer);
    }
    for (const s of this.#sessions.keys()) await s.shutdown("Server is shutting down.");
    await Promise.all(this.#sessions.values());
    clearInterval(this.#timer);
    await closed;
    await this.#xferChain;
    await this.#swept;
    this.#log.info("closed", { port: this.#port });
  }

  /**
   * Listeners, open sessions with their transfers, and counters since start, for `outpost status` and /metrics.
   *
   * @example
   * ```ts
   * declare const server: FtpServer; // listening
   * const st = server.status();
   * console.log(`${st.sessions.length} sessions, ${st.counters.bytesIn} bytes uploaded`);
   * ```
   */
  status(): FtpServerStatus {
    const listeners: FtpServerStatus["listeners"] = [];
    const tls = this.#opts.tls;
    if (this.port > 0) listeners.push({ host: this.hostname, port: this.port, tls: tls?.mode ?? "off" });
    if (this.implicitPort !== null) {
      listeners.push({ host: tls?.implicitHost ?? this.hostname, port: this.implicitPort, tls: "implicit" });
    }
    const sessions = [...this.#sessions.keys()].map((s) => ({
      id: s.id,
      ip: s.peerIp,
      user: s.userName,
      tls: s.tlsControl,
      since: s.openedAt,
      idleMs: Math.max(0, Date.now() - s.lastActivity),
      transfer: s.activeTransfer,
    }));
    return { listeners, sessions, counters: { ...this.#counters } };
  }
}

const REFUSAL_REPLIES: Record<string, string> = {
  shutting_down: "421 Server is shutting down.",
  banned: "421 Too many failed logins from your address; try again later.",
  max_sessions: "421 Too many users are connected; try again later.",
  max_sessions_per_ip: "421 Too many connections from your address; try again later.",
  max_unauthenticated: "421 Too many connections are waiting to log in; try again later.",
  max_unauthenticated_per_ip:
    "421 Too many connections from your address are waiting to log in; try again later.",
};
