/**
 * Telling systemd that the daemon is ready, and pinging its watchdog (`Type=notify`, `WatchdogSec=`).
 *
 * systemd listens on a Unix datagram socket named by `$NOTIFY_SOCKET`. Deno can only send to one with an unstable
 * API (`Deno.listenDatagram` with `transport: "unixpacket"`, behind `--unstable-net`), so when that is not there
 * this falls back to running `systemd-notify` (stable `Deno.Command`; the unit then needs `NotifyAccess=all`, which
 * the unit in `boards/` sets). Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op.
 *
 * @module
 */

import { Logger } from "../log/logger.ts";

const log = new Logger("systemd");

type DatagramSender = {
  send(p: Uint8Array, addr: { transport: "unixpacket"; path: string }): Promise<number>;
  close(): void;
};
type UnstableDeno = {
  listenDatagram?: (o: { transport: "unixpacket"; path: string }) => DatagramSender;
};

/**
 * Sends `sd_notify` messages (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=...`).
 *
 * @example
 * ```ts
 * const notify = SystemdNotifier.fromEnv();
 * await notify.send("READY=1\nSTATUS=serving");
 * notify.startWatchdog();
 * ```
 */
export class SystemdNotifier {
  /** The `$NOTIFY_SOCKET` path (an abstract "@" socket is reached via `systemd-notify`), or null outside systemd. */
  readonly socketPath: string | null;
  /** systemd's watchdog timeout in ms (from `$WATCHDOG_USEC`), or null when the unit has no watchdog. */
  readonly watchdogMs: number | null;
  #timer: ReturnType<typeof setInterval> | null = null;
  #broken = false;

  /** Makes a notifier; `watchdogUsec` is in microseconds as systemd gives it. Most callers use `fromEnv()`. */
  constructor(socketPath: string | null, watchdogUsec: number | null) {
    this.socketPath = socketPath;
    this.watchdogMs = watchdogUsec && watchdogUsec > 0 ? Math.floor(watchdogUsec / 1000) : null;
  }

  /** Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (absent outside systemd; then every call does nothing). */
  static fromEnv(): SystemdNotifier {
    let sock: string | null = null;
    let wd: number | null = null;
    try {
      sock = Deno.env.get("NOTIFY_SOCKET") ?? null;
      const w = Deno.env.get("WATCHDOG_USEC");
      wd = w ? Number(w) : null;
    } catch {
      // No --allow-env for these: not under systemd's notify protocol.
    }
    return new SystemdNotifier(sock, Number.isFinite(wd ?? NaN) ? wd : null);
  }

  /** True when systemd asked for notifications. */
  get enabled(): boolean {
    return this.socketPath !== null;
  }

  /** Sends one notification; failures are logged once and never thrown. */
  async send(state: string): Promise<void> {
    if (!this.socketPath || this.#broken) return;
    try {
      if (await this.#sendDatagram(state)) return;
      const out = await new Deno.Command("systemd-notify", {
        // --pid names the daemon as the sender: a short-lived helper otherwise races systemd's sender lookup.
        args: [`--pid=${Deno.pid}`, ...state.split("\n").filter((l) => l.length > 0)],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`);
    } catch (e) {
      this.#broken = true;
      log.warn("notify.failed", { reason: (e as Error).message });
    }
  }

  async #sendDatagram(state: string): Promise<boolean> {
    const d = Deno as unknown as UnstableDeno;
    const path = this.socketPath!;
    if (typeof d.listenDatagram !== "function" || path.startsWith("@")) return false;
    const local = `/tmp/outpost-notify-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.sock`;
    let sock: DatagramSender | null = null;
    try {
      sock = d.listenDatagram({ transport: "unixpacket", path: local });
      await sock.send(new TextEncoder().encode(state), { transport: "unixpacket", path });
      return true;
    } catch {
      return false;
    } finally {
      sock?.close();
      await Deno.remove(local).catch(() => {});
    }
  }

  /**
   * Pings the watchdog at half its interval until {@link SystemdNotifier.stop}, but only while `healthy()` says
   * so (a self-check, e.g. the FTP listeners still accept): a wedged daemon stops pinging and systemd restarts it.
   */
  startWatchdog(healthy: () => boolean = () => true): void {
    if (!this.enabled || this.watchdogMs === null || this.#timer !== null) return;
    const every = Math.max(500, Math.floor(this.watchdogMs / 2));
    this.#timer = setInterval(() => {
      if (healthy()) void this.send("WATCHDOG=1");
      else log.error("watchdog.withheld", { reason: "a self-check failed" });
    }, every);
  }

  /** Stops the watchdog pings. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
