/**
 * What status reads of the running config (the whole `OutpostConfig` fits it).
 *
 * @example
 * ```ts
 * const view: StatusConfigView = { device: { name: "pi", board: "rpi4" }, smtp: null, ftp: null, alerts: { sensors: [] } };
 * ```
 */
export interface StatusConfigView {
  /** `[device]`: the board's name and profile. */
  device: { name: string; board: string };
  /** `[smtp]`: the relay, or null. */
  smtp: { host: string; port: number } | null;
  /** The FTP server's accounts (status page logins), or null when FTP is off. */
  ftp: { accounts: Accounts } | null;
  /** The sensors, for the history ring. */
  alerts: { sensors: { name: string }[] };
}

/**
 * Which config runs, and the problems of the edited file (see {@link StatusSnapshot}).
 *
 * @example
 * ```ts
 * const c: ConfigState = { file: "/boot/firmware/outpost.toml", using: "file", edited: false, problems: [] };
 * ```
 */
export type ConfigState = StatusSnapshot["config"];

/**
 * The daemon's state at one moment, as `outpost status --json`, the status page and `/metrics` show it. Built by
 * {@link collectStatus} from a {@link StatusSource} (the daemon implements it), so this module depends on the parts'
 * types only, never on the daemon.
 *
 * Never contains secrets: no password, hash, SMTP credential or message body.
 *
 * @module
 */

import type { MonitorStatus, RuleStatus, SensorStatus } from "../alerts/monitor.ts";
import type { Accounts } from "../ftp/accounts.ts";
import type { FtpServerStatus } from "../ftp/ftp_server.ts";
import type { WorkerStatus } from "../smtp/delivery_worker.ts";
import type { OutboxEntry } from "../smtp/outbox.ts";

/**
 * What {@link collectStatus} asks of the running daemon.
 *
 * @example
 * ```ts
 * const source: StatusSource = {
 *   startedAt: Date.now(),
 *   config: () => cfg,
 *   configState: () => configFileState(cfg, false),
 *   ftp: () => null,
 *   monitor: () => null,
 *   outbox: () => null,
 *   worker: () => null,
 * };
 * ```
 */
export interface StatusSource {
  /** When the daemon started (ms since the epoch). */
  startedAt: number;
  /** The parts of the running config that status shows. */
  config(): StatusConfigView;
  /** Which config runs and what is wrong with the file on disk now (`configFileState` in the app layer). */
  configState(): Promise<ConfigState>;
  /** The FTP server's status, or null when FTP is off. */
  ftp(): FtpServerStatus | null;
  /** The alert monitor's status, or null when it does not run. */
  monitor(): MonitorStatus | null;
  /** The outbox's messages (queued and failed), or null when there is none. */
  outbox(): { list(): Promise<OutboxEntry[]> } | null;
  /** The delivery worker's health, or null without `[smtp]`. */
  worker(): WorkerStatus | null;
  /** The status page's address, or null when it is off. */
  httpUrl?(): string | null;
}

/**
 * The daemon's state at one moment (the `outpost status --json` document; times are ms since the epoch).
 *
 * @example
 * ```ts
 * const snap: StatusSnapshot = await collectStatus(source);
 * console.log(snap.rules.filter((r) => r.state === "alert").length);
 * ```
 */
export interface StatusSnapshot {
  /** Format version. */
  v: 1;
  /** When this snapshot was taken. */
  now: number;
  /** The board and process. */
  daemon: { name: string; board: string; pid: number; version: string; startedAt: number; uptimeMs: number };
  /** Which config runs: the file, the last good copy, or the embedded quick-start one, and the file's problems. */
  config: {
    file: string | null;
    using: "file" | "last-good" | "embedded";
    /** The file differs from the running config (reload with SIGHUP or `systemctl reload outpost`). */
    edited: boolean;
    /** Problems of the file as it is on disk now (empty when it is valid or unreadable as "none"). */
    problems: string[];
  };
  /** FTP listeners, sessions and counters; null when FTP is off. */
  ftp: FtpServerStatus | null;
  /** The alert monitor runs. */
  monitor: boolean;
  /** Readings taken since start. */
  samples: number;
  /** Each sensor's last reading. */
  sensors: SensorStatus[];
  /** Each rule's state. */
  rules: RuleStatus[];
  /** The mail outbox. */
  outbox: {
    smtp: string | null;
    queued: number;
    failed: number;
    /** Enqueue time of the oldest queued message, or null when none. */
    oldestQueuedAt: number | null;
    /** The last delivery error (worker), else the newest failed message's reason, else null. */
    lastError: string | null;
    /** Delivery is failing since then, or null. */
    failingSince: number | null;
    /** Delivery results since start. */
    results: { delivered: number; failed: number; deferred: number };
  };
  /** Where the status page is, or null when off. */
  http: string | null;
}

/** The program version shown by `outpost --version` and in status. */
export const OUTPOST_VERSION = "0.1.0";

/**
 * Takes a snapshot of the running daemon.
 *
 * @example
 * ```ts
 * const snap = await collectStatus(source);
 * console.log(JSON.stringify(snap));
 * ```
 */
export async function collectStatus(source: StatusSource): Promise<StatusSnapshot> {
  const now = Date.now();
  const cfg = source.config();
  const mon = source.monitor();
  const worker = source.worker();
  const box = source.outbox();
  let entries: OutboxEntry[] = [];
  if (box) entries = await box.list().catch(() => []);
  const queued = entries.filter((e) => e.state === "queued");
  const failed = entries.filter((e) => e.state === "failed");
  const newestFailed = failed.reduce<OutboxEntry | null>(
    (a, e) => (a === null || e.meta.created > a.meta.created ? e : a),
    null,
  );
  return {
    v: 1,
    now,
    daemon: {
      name: cfg.device.name,
      board: cfg.device.board,
      pid: Deno.pid,
      version: OUTPOST_VERSION,
      startedAt: source.startedAt,
      uptimeMs: now - source.startedAt,
    },
    config: await source.configState(),
    ftp: source.ftp(),
    monitor: mon !== null,
    samples: mon?.samples ?? 0,
    sensors: mon?.sensors ?? [],
    rules: mon?.rules ?? [],
    outbox: {
      smtp: cfg.smtp ? `${cfg.smtp.host}:${cfg.smtp.port}` : null,
      queued: queued.length,
      failed: failed.length,
      oldestQueuedAt: queued.length ? Math.min(...queued.map((e) => e.meta.created)) : null,
      lastError: worker?.lastError ?? newestFailed?.reason?.trim() ?? null,
      failingSince: worker?.failingSince?.getTime() ?? null,
      results: worker?.results ?? { delivered: 0, failed: 0, deferred: 0 },
    },
    http: source.httpUrl?.() ?? null,
  };
}
