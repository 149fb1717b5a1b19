/**
 * The background delivery worker: takes due messages from the {@link Outbox} oldest first, sends each in its own
 * SMTP session, and settles it by the outcome:
 *
 * - 250: removed from the outbox (after the `.sending` marker dance described in `outbox.ts`). Recipients refused
 *   with a 4xx while others accepted get a copy queued just for them; 5xx-refused ones get a copy in `failed/`.
 * - 5xx (or a refusal outpost itself makes, such as SIZE): moved to `failed/` and logged — retrying cannot help.
 * - A failure after the final "." (the `.sending` marker exists): the server may have the message, so it is
 *   retried at most {@link MAX_IN_DOUBT} times in all, each after at least `retryMaxMs`, logged as `in_doubt`,
 *   then moved to `failed/` with a reason saying it may have arrived that many times.
 * - Older mail is never overtaken: when a message is due, older queued ones are tried first in the same round.
 * - 4xx, timeouts, network and TLS errors: retried with exponential backoff and jitter. The delay grows with the
 *   message's age (about doubling per attempt, from `retryMinMs` to `retryMaxMs`, ±25% jitter) and is stored as
 *   the file's mtime, so it survives restarts. Once a message is older than `maxAgeMs` and fails again it moves to
 *   `failed/`. A failure before MAIL (connect, TLS, EHLO, AUTH) pauses the whole queue for the same delay instead
 *   of hammering the server once per message.
 *
 * Run exactly one worker per outbox directory (the daemon's).
 *
 * @module
 */

import { Logger } from "../log/logger.ts";
import { deliver, type SmtpClientOptions, SmtpError } from "./smtp_client.ts";
import { fileMessageSource, type Outbox, type OutboxEntry, sendPrefix } from "./outbox.ts";

const log = new Logger("mail");

/**
 * Options for {@link DeliveryWorker}.
 *
 * @example
 * ```ts
 * const o: DeliveryWorkerOptions = { pollMs: 30_000 };
 * console.log(o.pollMs);
 * ```
 */
export interface DeliveryWorkerOptions {
  /** Longest sleep between queue scans (other processes such as `outpost sendmail` enqueue without a kick). */
  pollMs?: number;
  /** Called when a message is moved to failed/. */
  onFailed?: (entry: OutboxEntry, reason: string) => void;
  /** Random source for jitter (tests pass a fixed one). */
  random?: () => number;
}

/**
 * The worker's health, for `outpost status` and the alert digest.
 *
 * @example
 * ```ts
 * declare const worker: DeliveryWorker; // the running worker
 * const s: WorkerStatus = worker.status();
 * if (s.failing) console.log(`mail failing since ${s.failingSince}: ${s.lastError}`);
 * ```
 */
export interface WorkerStatus {
  /** The last delivery attempt failed (cleared by the next success). */
  failing: boolean;
  /** When the current run of failures started; null while delivering fine. */
  failingSince: Date | null;
  /** The last delivery error's message; null while delivering fine. */
  lastError: string | null;
  /** Messages in the queue at the last scan (including ones waiting for a retry). */
  pending: number;
  /** Delivery results since the worker started: accepted, given up (moved to failed/), deferred for a retry. */
  results: { delivered: number; failed: number; deferred: number };
}

/**
 * Most times a message is sent again after the final "." went out without a 250 coming back (each may have been
 * delivered); then it moves to failed/ saying so. Such retries wait at least `retry_max`.
 */
export const MAX_IN_DOUBT = 3;

const SESSION_STAGES = new Set(["connect", "greeting", "TLS", "EHLO", "STARTTLS", "AUTH"]);

/**
 * Delivers the outbox in the background.
 *
 * @example
 * ```ts
 * import type { Outbox } from "./outbox.ts";
 * import type { SmtpClientOptions } from "./smtp_client.ts";
 *
 * declare const outbox: Outbox; // see Outbox.open
 * declare const smtpOptions: SmtpClientOptions; // the [smtp] table
 * const worker = new DeliveryWorker(outbox, smtpOptions);
 * worker.start();
 * await outbox.enqueue({ to: ["me@example.com"], subject: "hi", text: "hello" });
 * worker.kick();
 * await worker.stop();
 * ```
 */
export class DeliveryWorker {
  readonly #outbox: Outbox;
  readonly #smtp: SmtpClientOptions;
  readonly #pollMs: number;
  readonly #onFailed?: (entry: OutboxEntry, reason: string) => void;
  readonly #random: () => number;
  readonly #buf = new Uint8Array(65536);
  #running = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #kicked = false;
  #pauseUntil = 0;
  #failingSince: Date | null = null;
  #lastError: string | null = null;
  #pending = 0;
  #results = { delivered: 0, failed: 0, deferred: 0 };
  #watcher: Deno.FsWatcher | null = null;

  /** Makes a stopped worker for `outbox`; sets the outbox's sender defaults from `smtp`. Call `start()`. */
  constructor(outbox: Outbox, smtp: SmtpClientOptions, opts: DeliveryWorkerOptions = {}) {
    this.#outbox = outbox;
    this.#smtp = smtp;
    this.#pollMs = opts.pollMs ?? outbox.options.pollMs ?? 30_000;
    this.#onFailed = opts.onFailed;
    this.#random = opts.random ?? Math.random;
    outbox.setDefaults({ from: smtp.from, fromName: smtp.fromName, domain: smtp.heloName });
  }

  /** Starts the background loop (idempotent). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#watchMaildrop();
    this.#loop = this.#run();
  }

  /** Kicks the worker when a local user drops a message (inotify; the poll stays as the fallback). */
  #watchMaildrop(): void {
    try {
      const watcher = Deno.watchFs(this.#outbox.maildropDir, { recursive: false });
      this.#watcher = watcher;
      (async () => {
        for await (const _ of watcher) this.kick();
      })().catch((e) => log.warn("maildrop.watch_ended", { reason: (e as Error).message }));
    } catch (e) {
      log.warn("maildrop.watch_unavailable", {
        reason: (e as Error).message,
        note: "the worker polls instead",
      });
    }
  }

  /** Stops after the delivery in progress (if any) settles. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#watcher?.close();
    this.#watcher = null;
    this.#wake?.();
    await this.#loop;
    this.#loop = null;
  }

  /** Wakes the worker now (after an enqueue) and lifts a connection-failure pause. */
  kick(): void {
    this.#kicked = true;
    this.#pauseUntil = 0;
    this.#wake?.();
  }

  /** Current health. */
  status(): WorkerStatus {
    return {
      failing: this.#failingSince !== null,
      failingSince: this.#failingSince,
      lastError: this.#lastError,
      pending: this.#pending,
      results: { ...this.#results },
    };
  }

  async #run(): Promise<void> {
    while (this.#running) {
      let next = Date.now() + this.#pollMs;
      try {
        next = Math.min(next, await this.runOnce());
      } catch (e) {
        log.error("worker.error", { error: e instanceof Error ? e.message : String(e) });
      }
      if (!this.#running) break;
      if (this.#kicked) {
        this.#kicked = false;
        continue;
      }
      const wait = Math.max(50, next - Date.now());
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, wait);
      });
      clearTimeout(timer);
      this.#wake = null;
      this.#kicked = false;
    }
  }

  /**
   * Attempts every due message once, oldest first. Resolves to the time (ms) when the next one falls due.
   * Tests and `outpost outbox` call it directly.
   */
  async runOnce(): Promise<number> {
    try {
      await this.#outbox.pickup();
    } catch (e) {
      log.error("maildrop.pickup_failed", { error: e instanceof Error ? e.message : String(e) });
    }
    const now = Date.now();
    const entries = await this.#outbox.list("queued");
    this.#pending = entries.length;
    let next = Infinity;
    if (now < this.#pauseUntil) return this.#pauseUntil;
    // Mail never overtakes older mail: when a message is due, older queued ones are tried first even if their
    // backoff has not run out (after an outage the old alert must not arrive after the newer digest). A message
    // that may already have reached the server (in doubt) keeps its own, longer delay.
    let lastDue = -1;
    entries.forEach((e, i) => {
      if (e.notBefore.getTime() <= now) lastDue = i;
    });
    for (const [i, e] of entries.entries()) {
      if (!this.#running && this.#loop !== null) break;
      if (e.notBefore.getTime() > Date.now() && (i > lastDue || e.inDoubt)) {
        next = Math.min(next, e.notBefore.getTime());
        continue;
      }
      const sessionFailed = await this.#attempt(e);
      if (sessionFailed) {
        next = Math.min(next, this.#pauseUntil);
        break;
      }
    }
    this.#pending = await this.#outbox.pendingCount();
    return next;
  }

  #delay(ageMs: number): number {
    const { retryMinMs, retryMaxMs } = this.#outbox.options;
    const base = Math.min(retryMaxMs, Math.max(retryMinMs, ageMs));
    return Math.round(base * (0.75 + 0.5 * this.#random()));
  }

  /** One attempt; resolves true when the failure was session-wide (stop the round). */
  async #attempt(e: OutboxEntry): Promise<boolean> {
    const outbox = this.#outbox;
    const { meta } = e;
    outbox.busy.add(e.id);
    if (e.inDoubt) log.warn("resend", { id: e.id, messageId: meta.messageId, note: "possible duplicate" });
    try {
      const prefix = sendPrefix(meta, this.#smtp);
      const stored = fileMessageSource(e.path, e.offset, e.size, meta, this.#buf);
      const result = await deliver(
        this.#smtp,
        { from: meta.from || this.#smtp.from, to: meta.to },
        {
          ...stored,
          size: stored.size + prefix.length,
          write: async (w) => {
            if (prefix.length > 0) await w.write(prefix);
            await stored.write(w);
          },
        },
        { beforeDot: () => outbox.markSending(e.id) },
      );
      const temp = result.refused.filter((r) => !r.error.permanent);
      const perm = result.refused.filter((r) => r.error.permanent);
      if (temp.length > 0) {
        const copy = await outbox.requeueFor(e.id, temp.map((r) => r.rcpt));
        log.warn("partial", { id: e.id, retry: copy, rcpts: temp.map((r) => r.rcpt).join(",") });
      }
      if (perm.length > 0) {
        const copy = await outbox.requeueFor(e.id, perm.map((r) => r.rcpt));
        const reason = perm.map((r) => r.error.message).join(" ");
        await outbox.fail(copy, reason);
        log.error("rcpt.failed", { id: e.id, failed: copy, reason });
        this.#onFailed?.({ ...e, id: copy, state: "failed" }, reason);
      }
      await outbox.delivered(e.id);
      this.#results.delivered++;
      log.info("delivered", {
        id: e.id,
        to: result.accepted.join(","),
        subject: meta.subject,
        messageId: meta.messageId,
        rcpts: result.accepted.length,
      });
      this.#failingSince = null;
      this.#lastError = null;
      return false;
    } catch (err) {
      const error = err instanceof SmtpError
        ? err
        : new SmtpError("message", `Delivery failed: ${err instanceof Error ? err.message : String(err)}`);
      const age = Date.now() - meta.created;
      // Any reply but 250 (to the final dot too) means the server did not take it: no duplicate is possible.
      if (error.reply !== null) await outbox.clearSending(e.id).catch(() => {});
      this.#lastError = error.message;
      this.#failingSince ??= new Date();
      if (error.permanent || age > outbox.options.maxAgeMs) {
        const reason = error.permanent
          ? error.message
          : `Gave up after ${Math.round(age / 60000)} min: ${error.message}`;
        await outbox.fail(e.id, reason);
        this.#results.failed++;
        log.error("failed", {
          id: e.id,
          to: meta.to.join(","),
          subject: meta.subject,
          messageId: meta.messageId,
          reason,
        });
        this.#onFailed?.({ ...e, state: "failed" }, reason);
        return false;
      }
      const doubt = await outbox.inDoubtCount(e.id);
      if (doubt >= MAX_IN_DOUBT) {
        // The server took the final "." that often without a 250 reaching us: it may have delivered every copy.
        const reason = `Not sent again: the server dropped or failed the ` +
          `connection after the final "." ${doubt} times (last: ${error.message}); the message may have ` +
          `arrived up to ${doubt} times (Message-ID ${meta.messageId}).`;
        await outbox.fail(e.id, reason);
        log.error("in_doubt.gave_up", { id: e.id, messageId: meta.messageId, copies: doubt });
        this.#results.failed++;
        this.#onFailed?.({ ...e, state: "failed" }, reason);
        return false;
      }
      const delay = doubt > 0
        ? Math.max(this.#delay(age), this.#outbox.options.retryMaxMs)
        : this.#delay(age);
      await outbox.defer(e.id, new Date(Date.now() + delay), error.message);
      this.#results.deferred++;
      if (doubt > 0) {
        log.warn("in_doubt.retry", {
          id: e.id,
          messageId: meta.messageId,
          attempt: doubt,
          max: MAX_IN_DOUBT,
          in_s: Math.round(delay / 1000),
          error: error.message,
        });
      } else {
        log.warn("retry", {
          id: e.id,
          to: meta.to.join(","),
          subject: meta.subject,
          in_s: Math.round(delay / 1000),
          error: error.message,
        });
      }
      if (SESSION_STAGES.has(error.stage)) {
        this.#pauseUntil = Date.now() + delay;
        return true;
      }
      return false;
    } finally {
      outbox.busy.delete(e.id);
    }
  }
}
