/**
 * Everything the daemon offers about itself: the status socket (`outpost status`), the sensor history ring, and,
 * when `[status] http = true`, the status page with `/metrics`. The daemon starts one {@link StatusService} after
 * its parts and stops it first. A status listener that cannot start is logged and left off: the board's real
 * jobs (FTP, mail, alerts) never stop for it.
 *
 * @module
 */

import { Logger } from "../log/logger.ts";
import { SensorHistory } from "./sensor_history.ts";
import type { StatusConfig } from "./status_config.ts";
import { StatusHttp } from "./status_http.ts";
import { collectStatus, type StatusSnapshot, type StatusSource } from "./status_snapshot.ts";
import { StatusSocket } from "./status_socket.ts";

const log = new Logger("status");

/** How often the history ring takes the sensors' latest readings. */
const HISTORY_POLL_MS = 10_000;
/** Snapshots asked for within this time are shared. */
const SNAPSHOT_REUSE_MS = 1000;

/**
 * The running status endpoints.
 *
 * @example
 * ```ts
 * const service = await StatusService.start(config.status, source, "/var/lib/outpost");
 * // ...
 * await service.stop();
 * ```
 */
export class StatusService {
  /** The status config it was started with. */
  readonly config: StatusConfig;
  /** Each sensor's recent readings (bounded ring). */
  readonly history: SensorHistory;
  readonly #source: StatusSource;
  readonly #historyFile: string | null;
  #socket: StatusSocket | null = null;
  #http: StatusHttp | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #cached: { at: number; snap: Promise<StatusSnapshot> } | null = null;

  private constructor(config: StatusConfig, source: StatusSource, stateDir: string) {
    this.config = config;
    this.#source = source;
    this.history = new SensorHistory(config.historyMs, config.historySlots);
    this.#historyFile = config.saveHistory ? `${stateDir}/history.json` : null;
  }

  /** Starts the socket, the history and the page as configured; failures are logged, never thrown. */
  static async start(config: StatusConfig, source: StatusSource, stateDir: string): Promise<StatusService> {
    const s = new StatusService(config, source, stateDir);
    await s.#loadHistory();
    s.sampleHistory();
    s.#timer = setInterval(() => s.sampleHistory(), HISTORY_POLL_MS);
    if (config.socket) {
      try {
        s.#socket = await StatusSocket.listen(config.socket, config.socketMode, () => s.snapshot());
      } catch (e) {
        log.error("socket.failed", {
          path: config.socket,
          reason: (e as Error).message,
          note: "`outpost status` cannot reach this daemon",
        });
      }
    }
    if (config.http) {
      try {
        s.#http = await StatusHttp.start(config, {
          snapshot: () => s.sharedSnapshot(),
          history: s.history,
          accounts: () => source.config().ftp?.accounts ?? null,
        });
      } catch (e) {
        log.error("http.failed", { host: config.host, port: config.port, reason: (e as Error).message });
      }
    }
    return s;
  }

  /** The status page's URL, or null when it is off. */
  get httpUrl(): string | null {
    return this.#http?.url ?? null;
  }

  /** The status socket's path, or null when it is off. */
  get socketPath(): string | null {
    return this.#socket?.path ?? null;
  }

  /** A snapshot of the daemon now (what `outpost status` gets); also feeds the history. */
  snapshot(): Promise<StatusSnapshot> {
    return this.#takeSnapshot();
  }

  /**
   * A snapshot for the page and /metrics: requests within one second share one, so a burst of scrapes or page
   * loads costs one outbox scan and one config read.
   */
  sharedSnapshot(): Promise<StatusSnapshot> {
    const now = Date.now();
    if (this.#cached && now - this.#cached.at < SNAPSHOT_REUSE_MS) return this.#cached.snap;
    const snap = this.#takeSnapshot();
    this.#cached = { at: now, snap };
    snap.catch(() => this.#cached = null);
    return snap;
  }

  async #takeSnapshot(): Promise<StatusSnapshot> {
    const snap = await collectStatus({ ...this.#source, httpUrl: () => this.httpUrl });
    for (const s of snap.sensors) {
      if (s.value !== null && s.at !== null && s.error === null) this.history.record(s.name, s.at, s.value);
    }
    return snap;
  }

  /** Copies each sensor's latest good reading into the history (called every 10 s). */
  sampleHistory(): void {
    const mon = this.#source.monitor();
    if (!mon) return;
    for (const s of mon.sensors) {
      if (s.value !== null && s.at !== null && s.error === null) this.history.record(s.name, s.at, s.value);
    }
  }

  async #loadHistory(): Promise<void> {
    if (!this.#historyFile) return;
    const names = this.#source.config().alerts.sensors.map((s) => s.name);
    try {
      this.history.load(JSON.parse(await Deno.readTextFile(this.#historyFile)), names);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        log.warn("history.unreadable", { path: this.#historyFile, reason: (e as Error).message });
      }
    }
  }

  async #saveHistory(): Promise<void> {
    if (!this.#historyFile) return;
    const tmp = `${this.#historyFile}.tmp`;
    try {
      await Deno.writeTextFile(tmp, JSON.stringify(this.history.save(Date.now())), { mode: 0o600 });
      await Deno.rename(tmp, this.#historyFile);
    } catch (e) {
      log.warn("history.save_failed", { path: this.#historyFile, reason: (e as Error).message });
    }
  }

  /** Stops the listeners and saves the history (once, if configured). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#http?.close();
    this.#http = null;
    await this.#socket?.close();
    this.#socket = null;
    this.sampleHistory();
    await this.#saveHistory();
  }
}
