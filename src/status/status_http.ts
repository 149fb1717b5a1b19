/**
 * The status page's HTTP service (on the bounded `StatusListener`): `/` (the page), `/metrics` (Prometheus), `/status.json` (the
 * `outpost status --json` document). GET and HEAD only.
 *
 * Login: beyond loopback, or whenever `[status] user` is set, every request needs HTTP Basic credentials: the
 * `[status]` user, or (with `ftp_logins`) an FTP account with a password. Password checks (PBKDF2) run one at a time,
 * a failure costs one second, and a good login is remembered for 15 minutes (a bounded cache of hashes, never the
 * password), so a browser's repeated requests do not each pay for a key derivation on a small board.
 *
 * @module
 */

import { verifyPassword } from "../config/password.ts";
import type { Accounts } from "../ftp/accounts.ts";
import { Logger } from "../log/logger.ts";
import { formatMetrics, METRICS_CONTENT_TYPE } from "./prometheus_metrics.ts";
import type { SensorHistory } from "./sensor_history.ts";
import { isLoopbackHost, type StatusConfig } from "./status_config.ts";
import { renderStatusPage } from "./status_page.ts";
import type { StatusSnapshot } from "./status_snapshot.ts";
import { StatusListener } from "./status_listener.ts";

const log = new Logger("status");

/**
 * What the HTTP listener serves from.
 *
 * @example
 * ```ts
 * import { SensorHistory } from "./sensor_history.ts";
 * import { collectStatus, type StatusSource } from "./status_snapshot.ts";
 *
 * declare const source: StatusSource; // the running daemon
 * const history = new SensorHistory(86_400_000, 288);
 * const deps: StatusHttpDeps = { snapshot: () => collectStatus(source), history, accounts: () => null };
 * console.log(Object.keys(deps));
 * ```
 */
export interface StatusHttpDeps {
  /** A fresh snapshot per request. */
  snapshot(): Promise<StatusSnapshot>;
  /** Sensor history for the charts. */
  history: SensorHistory;
  /** The FTP accounts (for `ftp_logins`), or null. */
  accounts(): Accounts | null;
}

const LOGIN_CACHE_MS = 15 * 60_000;
const LOGIN_CACHE_MAX = 32;
const FAIL_DELAY_MS = 1000;
const MAX_WAITING_LOGINS = 8;
/** Failed logins from one address before it is banned for {@link BAN_MS} (as the FTP server's defaults). */
const MAX_FAILURES = 5;
const BAN_MS = 5 * 60_000;
/** Addresses remembered at most; expired entries go first, then the oldest unbanned, an active ban last. */
const FAILURE_TABLE_MAX = 1024;

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; " +
    "frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "x-frame-options": "DENY",
};

async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The running status page.
 *
 * @example
 * ```ts
 * import { loadConfig } from "../app/outpost_config.ts";
 *
 * declare const deps: StatusHttpDeps; // see StatusHttpDeps
 * const config = await loadConfig();
 * const http = await StatusHttp.start(config.status, deps);
 * console.log(http.url);
 * await http.close();
 * ```
 */
export class StatusHttp {
  /** The page's URL (`http://host:port/`). */
  readonly url: string;
  readonly #listener: StatusListener;

  private constructor(listener: StatusListener, url: string) {
    this.#listener = listener;
    this.url = url;
  }

  /** Starts listening on `[status] host:port`; rejects when the address cannot be bound. */
  static async start(cfg: StatusConfig, deps: StatusHttpDeps): Promise<StatusHttp> {
    const auth = new LoginCheck(cfg, deps);
    let listener: StatusListener;
    try {
      listener = await StatusListener.start(cfg.host, cfg.port, (req, ip) => handle(req, deps, auth, ip));
    } catch (e) {
      throw new Error(`Status page not started on ${cfg.host}:${cfg.port}: ${(e as Error).message}`);
    }
    const addr = listener.addr;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    const url = `http://${host}:${addr.port}/`;
    log.info("http.listening", { url, login: auth.required ? "required" : "none (loopback)" });
    return new StatusHttp(listener, url);
  }

  /** Stops listening and closes open connections. */
  async close(): Promise<void> {
    await this.#listener.close();
  }
}

class LoginCheck {
  readonly required: boolean;
  readonly #cfg: StatusConfig;
  readonly #deps: StatusHttpDeps;
  readonly #good = new Map<string, number>();
  #chain: Promise<unknown> = Promise.resolve();
  #waiting = 0;

  constructor(cfg: StatusConfig, deps: StatusHttpDeps) {
    this.#cfg = cfg;
    this.#deps = deps;
    this.required = !isLoopbackHost(cfg.host) || cfg.user !== null;
  }

  readonly #failures = new Map<string, { count: number; last: number; bannedUntil: number }>();

  /** "ok", "denied", "busy" or "banned" for the request's Authorization header from `ip`. */
  async check(header: string | null, ip: string): Promise<"ok" | "denied" | "busy" | "banned"> {
    if (!this.required) return "ok";
    const now0 = Date.now();
    const f = this.#failures.get(ip);
    // A password guesser gets no more checks while banned, not even a right one.
    if (f && f.bannedUntil > now0) return "banned";
    const creds = basicCredentials(header);
    if (!creds) return "denied";
    const { user, password } = creds;
    const key = await sha256Hex(`${user}\0${password}`);
    const now = Date.now();
    const until = this.#good.get(key);
    if (until !== undefined && until > now) return "ok";
    if (this.#waiting >= MAX_WAITING_LOGINS) return "busy";
    this.#waiting++;
    // Checks run one at a time; a ban that lands while a request waits stops its check too (parallel guessing).
    const run = this.#chain.then((): Promise<boolean | "banned"> =>
      (this.#failures.get(ip)?.bannedUntil ?? 0) > Date.now()
        ? Promise.resolve("banned")
        : this.#verify(user, password)
    );
    this.#chain = run.catch(() => {});
    let ok: boolean | "banned" = false;
    try {
      ok = await run;
    } finally {
      this.#waiting--;
    }
    if (ok === "banned") return "banned";
    if (!ok) {
      const banned = this.#failed(ip, Date.now());
      log.warn("http.login_failed", { user, ip, banned });
      await new Promise((r) => setTimeout(r, FAIL_DELAY_MS));
      return "denied";
    }
    if (this.#good.size >= LOGIN_CACHE_MAX) {
      for (const [k, t] of this.#good) {
        if (t <= now || this.#good.size >= LOGIN_CACHE_MAX) this.#good.delete(k);
      }
    }
    this.#good.set(key, now + LOGIN_CACHE_MS);
    this.#failures.delete(ip);
    return "ok";
  }

  /**
   * The FTP account behind an accepted Authorization header, or null for the `[status]` user (and when no login
   * is required): FTP accounts see their own FTP sessions only, not other users' names, addresses and files.
   */
  ftpViewer(header: string | null): string | null {
    if (!this.required) return null;
    const user = basicCredentials(header)?.user;
    return user === undefined || user === this.#cfg.user ? null : user;
  }

  /** Counts a failure from `ip`; true when it is now banned. The table stays bounded without freeing a ban. */
  #failed(ip: string, now: number): boolean {
    let f = this.#failures.get(ip);
    if (f && f.bannedUntil !== 0 && f.bannedUntil <= now) f = undefined; // a served ban starts over
    if (!f) {
      if (this.#failures.size >= FAILURE_TABLE_MAX) this.#evict(now);
      f = { count: 0, last: now, bannedUntil: 0 };
    }
    f.count++;
    f.last = now;
    if (f.count >= MAX_FAILURES) f.bannedUntil = now + BAN_MS;
    this.#failures.delete(ip);
    this.#failures.set(ip, f); // Map order = least recently failed first
    return f.bannedUntil > now;
  }

  #evict(now: number): void {
    for (const [k, v] of this.#failures) {
      if (v.bannedUntil !== 0 && v.bannedUntil <= now) this.#failures.delete(k);
    }
    for (const [k, v] of this.#failures) {
      if (this.#failures.size < FAILURE_TABLE_MAX) return;
      if (v.bannedUntil <= now) this.#failures.delete(k);
    }
    for (const k of this.#failures.keys()) {
      if (this.#failures.size < FAILURE_TABLE_MAX) return;
      this.#failures.delete(k);
    }
  }

  async #verify(user: string, password: string): Promise<boolean> {
    const cfg = this.#cfg;
    if (cfg.user !== null && cfg.passwordHash !== null && user === cfg.user) {
      return await verifyPassword(password, cfg.passwordHash);
    }
    if (!cfg.ftpLogins) return false;
    const accounts = this.#deps.accounts();
    if (!accounts) return false;
    const u = accounts.users.find((x) => x.name === user);
    if (!u || u.passwordHash === null) {
      await accounts.authenticate(`\0unknown-${user}`, password); // same cost as a real check
      return false;
    }
    return await verifyPassword(password, u.passwordHash);
  }
}

/** User and password of an HTTP Basic `Authorization` header (UTF-8), or null when it is not one. */
function basicCredentials(header: string | null): { user: string; password: string } | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!m) return null;
  let decoded: string;
  try {
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)),
    );
  } catch {
    return null;
  }
  const i = decoded.indexOf(":");
  return i <= 0 ? null : { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

function respond(
  req: Request,
  body: string,
  status: number,
  type: string,
  extra: Record<string, string> = {},
) {
  return new Response(req.method === "HEAD" ? null : body, {
    status,
    headers: { "content-type": type, ...SECURITY_HEADERS, ...extra },
  });
}

async function handle(
  req: Request,
  deps: StatusHttpDeps,
  auth: LoginCheck,
  ip: string,
): Promise<Response> {
  const text = "text/plain; charset=utf-8";
  if (req.method !== "GET" && req.method !== "HEAD") {
    return respond(req, "Only GET and HEAD are served here.\n", 405, text, { allow: "GET, HEAD" });
  }
  const verdict = await auth.check(req.headers.get("authorization"), ip);
  if (verdict === "banned") {
    return respond(req, "Too many failed logins from this address; try again later.\n", 429, text, {
      "retry-after": String(Math.ceil(BAN_MS / 1000)),
    });
  }
  if (verdict === "busy") {
    return respond(req, "Too many logins at once; try again.\n", 503, text, { "retry-after": "5" });
  }
  if (verdict === "denied") {
    return respond(req, "Log in with the [status] user or an FTP account.\n", 401, text, {
      "www-authenticate": 'Basic realm="outpost status", charset="UTF-8"',
    });
  }
  const viewer = auth.ftpViewer(req.headers.get("authorization"));
  const snapshot = async (): Promise<StatusSnapshot> => {
    const snap = await deps.snapshot();
    if (viewer === null || !snap.ftp) return snap;
    return { ...snap, ftp: { ...snap.ftp, sessions: snap.ftp.sessions.filter((x) => x.user === viewer) } };
  };
  const path = new URL(req.url).pathname;
  if (path === "/" || path === "/index.html") {
    const snap = await snapshot();
    const html = renderStatusPage(snap, (name) => deps.history.points(name, snap.now), deps.history.spanMs);
    return respond(req, html, 200, "text/html; charset=utf-8");
  }
  if (path === "/metrics") {
    return respond(req, formatMetrics(await snapshot()), 200, METRICS_CONTENT_TYPE);
  }
  if (path === "/status.json") {
    return respond(req, JSON.stringify(await snapshot()), 200, "application/json; charset=utf-8");
  }
  return respond(req, "Not found. Try / , /metrics or /status.json.\n", 404, text);
}
