/**
 * The one daemon: FTP server, outbox delivery worker and alert monitor in one process.
 *
 * {@link OutpostDaemon.start} brings the parts up from a validated config; {@link OutpostDaemon.reload} swaps in a
 * new config (the caller validates it first, so a bad file never stops a running board);
 * {@link OutpostDaemon.stop} drains: it stops accepting, gives running transfers a deadline, stops the monitor
 * (which flushes its state) and lets the worker finish the message it is sending.
 *
 * @module
 */

import { type AlertMailer, AlertMonitor } from "../alerts/monitor.ts";
import { AUTO_GENERATED, outboxAlertMailer } from "../alerts/outbox_mailer.ts";
import { configFileState, type OutpostConfig } from "../app/outpost_config.ts";
import { FtpServer } from "../ftp/ftp_server.ts";
import { Logger } from "../log/logger.ts";
import { DeliveryWorker } from "../smtp/delivery_worker.ts";
import { Outbox } from "../smtp/outbox.ts";
import { StatusService } from "../status/status_service.ts";

const log = new Logger("daemon");

/**
 * A running outpost daemon.
 *
 * @example
 * ```ts
 * const daemon = await OutpostDaemon.start(await loadConfig("/boot/firmware/outpost.toml"));
 * Deno.addSignalListener("SIGTERM", () => daemon.stop(10_000).then(() => Deno.exit(0)));
 * ```
 */
export class OutpostDaemon {
  #config: OutpostConfig;
  #ftp: FtpServer | null = null;
  #outbox: Outbox | null = null;
  #worker: DeliveryWorker | null = null;
  #monitor: AlertMonitor | null = null;
  #watcher: Deno.FsWatcher | null = null;
  #status: StatusService | null = null;
  /** When the daemon started (ms since the epoch), for `outpost status`. */
  readonly startedAt: number = Date.now();
  /** True when the running config is the last good copy (set by `outpost serve`), for `outpost status`. */
  fromLastGood = false;

  private constructor(config: OutpostConfig) {
    this.#config = config;
  }

  /** The config the daemon runs on now. */
  get config(): OutpostConfig {
    return this.#config;
  }

  /** The FTP server, when enabled. */
  get ftp(): FtpServer | null {
    return this.#ftp;
  }

  /**
   * True while every running part passes its self-check (the FTP listeners still accept connections): the
   * watchdog pings systemd only while this holds.
   *
   * @example
   * ```ts
   * notifier.startWatchdog(() => daemon.healthy());
   * ```
   */
  healthy(): boolean {
    return this.#ftp?.isAccepting() ?? true;
  }

  /** The outbox every mail goes through. */
  get outbox(): Outbox | null {
    return this.#outbox;
  }

  /** The delivery worker, when `[smtp]` is configured. */
  get worker(): DeliveryWorker | null {
    return this.#worker;
  }

  /** The status socket and page, when running. */
  get status(): StatusService | null {
    return this.#status;
  }

  /** The alert monitor, when enabled. */
  get monitor(): AlertMonitor | null {
    return this.#monitor;
  }

  /** Starts every enabled part; on failure, stops what had started and throws. */
  static async start(config: OutpostConfig): Promise<OutpostDaemon> {
    const d = new OutpostDaemon(config);
    try {
      await d.#startParts();
      await d.#startStatus();
    } catch (e) {
      await d.#stopParts(0);
      throw e;
    }
    return d;
  }

  /** Starts the status socket and page (`[status]`); they log their own failures and never stop the daemon. */
  async #startStatus(): Promise<void> {
    this.#status = await StatusService.start(this.#config.status, {
      startedAt: this.startedAt,
      config: () => this.#config,
      configState: () => configFileState(this.#config, this.fromLastGood),
      ftp: () => this.#ftp?.status() ?? null,
      monitor: () => this.#monitor?.status() ?? null,
      outbox: () => this.#outbox,
      worker: () => this.#worker?.status() ?? null,
    }, this.#config.device.stateDir);
  }

  async #startParts(): Promise<void> {
    for (const part of PARTS) await this.#startPart(part);
    const cfg = this.#config;
    log.info("started", {
      ftp: this.#ftp ? `${this.#ftp.hostname}:${this.#ftp.port}` : "off",
      smtp: cfg.smtp ? `${cfg.smtp.host}:${cfg.smtp.port}` : "off",
      sensors: cfg.alerts.sensors.length,
      rules: cfg.alerts.rules.length,
    });
  }

  async #startPart(part: Part): Promise<void> {
    const cfg = this.#config;
    if (part === "mail") {
      await Deno.mkdir(cfg.device.stateDir, { recursive: true });
      this.#outbox = await Outbox.open(cfg.outbox);
      if (cfg.smtp) {
        this.#worker = new DeliveryWorker(this.#outbox, cfg.smtp);
        this.#worker.start();
        this.#watchQueue(this.#outbox.queueDir, this.#worker);
      } else {
        this.#outbox.setDefaults({ from: `outpost@${cfg.device.name}.local`, domain: cfg.device.name });
        log.warn("smtp.unconfigured", { note: "mail is kept in the outbox until [smtp] is configured" });
      }
    } else if (part === "ftp") {
      if (!cfg.ftp) return;
      const ftp = new FtpServer(cfg.ftp);
      await ftp.listen();
      this.#ftp = ftp;
      if (cfg.ftp.accounts.users.length === 0 && !cfg.ftp.accounts.anonymousEnabled) {
        log.warn("ftp.no_users", { note: "no [[ftp.users]] and anonymous is off: nobody can log in" });
      }
    } else if (cfg.alerts.enabled && (cfg.alerts.sensors.length > 0 || cfg.alerts.rules.length > 0)) {
      this.#monitor = await AlertMonitor.open({
        config: cfg.alerts,
        mailer: this.#mailer(),
        stateFile: cfg.alerts.stateFile ?? `${cfg.device.stateDir}/alerts.json`,
        host: cfg.device.name,
        board: cfg.device.board,
      });
      this.#monitor.start();
    }
  }

  async #stopPart(part: Part, graceMs: number): Promise<void> {
    if (part === "mail") {
      const worker = this.#worker;
      this.#worker = null;
      this.#watcher?.close();
      this.#watcher = null;
      await worker?.stop();
      this.#outbox = null;
    } else if (part === "ftp") {
      const ftp = this.#ftp;
      this.#ftp = null;
      await ftp?.close({ graceMs });
    } else {
      const monitor = this.#monitor;
      this.#monitor = null;
      await monitor?.stop();
    }
  }

  /**
   * Wakes the worker as soon as another process (`outpost sendmail` from cron) renames a message into the queue,
   * instead of at the next poll. inotify costs nothing while idle; the poll stays as the fallback.
   */
  #watchQueue(dir: string, worker: DeliveryWorker): void {
    try {
      const watcher = Deno.watchFs(dir, { recursive: false });
      this.#watcher = watcher;
      (async () => {
        for await (const ev of watcher) {
          if (
            (ev.kind === "create" || ev.kind === "rename" || ev.kind === "modify") &&
            ev.paths.some((p) => p.endsWith(".msg"))
          ) worker.kick();
        }
      })().catch((e) => log.warn("outbox.watch_ended", { reason: (e as Error).message }));
    } catch (e) {
      log.warn("outbox.watch_unavailable", {
        reason: (e as Error).message,
        note: "the worker polls instead",
      });
    }
  }

  /** The alert monitor's view of the outbox and worker (getters: a reload of the mail part replaces both). */
  #mailer(): AlertMailer {
    return outboxAlertMailer(() => this.#outbox, () => this.#worker);
  }

  /**
   * Queues a mail to the alert recipients (start and crash notices). Does nothing without recipients.
   *
   * @example
   * ```ts
   * await daemon.notify("started", "outpost started at 12:00.");
   * ```
   */
  async notify(subject: string, text: string): Promise<void> {
    const to = this.#config.alerts.to;
    if (to.length === 0 || !this.#outbox) return;
    await this.#outbox.enqueue({
      to,
      subject: `[outpost ${this.#config.device.name}] ${subject}`,
      text,
      headers: AUTO_GENERATED,
    }, {
      critical: false,
      tag: "daemon",
    });
    this.#worker?.kick();
  }

  /**
   * Applies `next` (already validated): only the parts whose tables changed are restarted, so editing an alert rule
   * does not cut FTP sessions. If a changed part cannot start (say the new FTP port is taken), the old config's parts
   * are started again and the error is thrown: the daemon keeps serving the old config.
   */
  async reload(next: OutpostConfig): Promise<void> {
    const prev = this.#config;
    const before = partKeys(prev);
    const after = partKeys(next);
    const changed = PARTS.filter((p) => before[p] !== after[p]);
    log.info("reload.begin", { file: next.path ?? "embedded", restart: changed.join(",") || "nothing" });
    for (const part of [...changed].reverse()) await this.#stopPart(part, 5_000);
    this.#config = next;
    try {
      for (const part of changed) await this.#startPart(part);
    } catch (e) {
      log.error("reload.failed", { reason: (e as Error).message, note: "the previous config keeps running" });
      for (const part of [...changed].reverse()) await this.#stopPart(part, 0);
      this.#config = prev;
      for (const part of changed) await this.#startPart(part);
      throw e;
    }
    if (JSON.stringify(prev.status) !== JSON.stringify(next.status)) {
      await this.#status?.stop();
      await this.#startStatus();
    }
    this.fromLastGood = false;
    log.info("reload.done");
  }

  /** Drains and stops everything; transfers get `graceMs` to finish. */
  async stop(graceMs = 10_000): Promise<void> {
    await this.#status?.stop();
    this.#status = null;
    await this.#stopParts(graceMs);
    log.info("stopped");
  }

  async #stopParts(graceMs: number): Promise<void> {
    await Promise.allSettled([this.#stopPart("ftp", graceMs), this.#stopPart("monitor", graceMs)]);
    await this.#stopPart("mail", graceMs);
  }
}

/** The daemon's independently restartable parts, in start order (mail first: the monitor hands mail to it). */
const PARTS = ["mail", "ftp", "monitor"] as const;
type Part = typeof PARTS[number];

/** What each part is built from, as text: a part restarts on reload only when its text changed. */
function partKeys(cfg: OutpostConfig): Record<Part, string> {
  const d = cfg.document;
  const j = (v: unknown) => JSON.stringify(v ?? null);
  return {
    mail: j([d.smtp, d.outbox, cfg.device]),
    ftp: j([d.ftp, cfg.device.stateDir]),
    monitor: j([d.alerts, d.sensors, d.rules, cfg.device]),
  };
}
