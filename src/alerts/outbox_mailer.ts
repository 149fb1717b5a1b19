/**
 * The {@link AlertMailer} the daemon gives the alert monitor: the durable outbox plus its delivery worker, with
 * the supersede hooks (`pending`/`withdraw`) that let a newer mail about a rule replace a stale queued one; and
 * the fallback-config notice the daemon queues when it boots on a fallback config.
 *
 * @module
 */

import type { AlertMailer } from "./monitor.ts";
import type { Outbox } from "../smtp/outbox.ts";
import type { DeliveryWorker } from "../smtp/delivery_worker.ts";
import { type FallbackConfigInput, renderFallbackConfigMail } from "./templates.ts";

/**
 * RFC 3834's mark on mail a machine wrote by itself, so auto-responders and vacation replies leave it alone.
 *
 * @example
 * ```ts
 * await outbox.enqueue({ to, subject, text, headers: AUTO_GENERATED }, { critical: false });
 * ```
 */
export const AUTO_GENERATED: Readonly<Record<string, string>> = Object.freeze({
  "Auto-Submitted": "auto-generated",
});

/**
 * Adapts the daemon's outbox and worker to the monitor's mailer. Both are passed as getters because a reload
 * of the mail part replaces them while the monitor keeps its mailer; the worker is null while `[smtp]` is not
 * configured (mail waits, delivery counts as failing).
 *
 * @example
 * ```ts
 * const mailer = outboxAlertMailer(() => daemon.outbox, () => daemon.worker);
 * const monitor = await AlertMonitor.open({ config, mailer, stateFile, host: "pi-freezer", board: "rpi4" });
 * ```
 */
export function outboxAlertMailer(
  outbox: () => Outbox | null,
  worker: () => DeliveryWorker | null,
): AlertMailer {
  const box = () => {
    const o = outbox();
    if (!o) throw new Error("Mail is not running: the outbox is closed.");
    return o;
  };
  return {
    enqueue: async (msg, opts) => {
      const id = await box().enqueue({ ...msg, headers: AUTO_GENERATED }, {
        critical: opts.critical,
        tag: opts.tag,
      });
      worker()?.kick();
      return id;
    },
    deliveryFailing: () => {
      const w = worker();
      return w === null || w.status().failing;
    },
    pending: (tags) => outbox()?.pending(tags) ?? Promise.resolve([]),
    withdraw: (ids) => outbox()?.withdraw(ids) ?? Promise.resolve(0),
  };
}

/**
 * Queues the one mail a boot on a fallback config sends (see `renderFallbackConfigMail` in templates.ts) to
 * `to` (the alert recipients). The same refused file is reported once, not at every restart: the SHA-256 of its
 * text and problems is kept in `<stateDir>/fallback-notice`. A newer notice replaces an older one still queued.
 * Resolves to the outbox id, or null when nothing was queued (no recipients, or already reported).
 *
 * @example
 * ```ts
 * await queueFallbackConfigNotice(outbox, { to: cfg.alerts.to, stateDir: cfg.device.stateDir,
 *   fileText: await Deno.readTextFile("/boot/firmware/outpost.toml"),
 *   input: { host: "pi", board: "rpi4", file: "/boot/firmware/outpost.toml", problems,
 *     runningFrom: "the last good copy", at: Date.now() } });
 * ```
 */
export async function queueFallbackConfigNotice(
  outbox: Outbox,
  opts: { to: string[]; stateDir: string; fileText: string; input: FallbackConfigInput },
): Promise<string | null> {
  if (opts.to.length === 0) return null;
  const digest = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      new TextEncoder().encode(JSON.stringify([opts.input.file, opts.fileText, opts.input.problems])),
    ),
  );
  const hash = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  const marker = `${opts.stateDir}/fallback-notice`;
  const seen = await Deno.readTextFile(marker).then((t) => t.trim()).catch(() => "");
  if (seen === hash) return null;
  const stale = await outbox.pending(["config-fallback"]);
  const { subject, text } = renderFallbackConfigMail(opts.input);
  const id = await outbox.enqueue({ to: opts.to, subject, text, headers: AUTO_GENERATED }, {
    critical: true,
    tag: "config-fallback",
  });
  await outbox.withdraw(stale.map((s) => s.id));
  await Deno.writeTextFile(`${marker}.tmp`, hash + "\n");
  await Deno.rename(`${marker}.tmp`, marker);
  return id;
}
