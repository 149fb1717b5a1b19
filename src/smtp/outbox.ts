/**
 * The durable outbox: every message is on disk before anyone is told it was accepted, and leaves the disk only
 * after the server's final 250.
 *
 * ## Layout
 * ```
 * <dir>/maildrop/<name>     where local users submit (mode 1733, see maildrop.ts); the daemon picks them up
 * <dir>/incoming/<name>     a maildrop file the daemon took and is copying into queue/ (private)
 * <dir>/tmp/<id>.tmp        being written (the writer holds an flock); swept only when old and unlocked
 * <dir>/queue/<id>.msg      accepted: one header line `OUTPOST-QUEUE-1 {json meta}\n`, then the RFC 5322 message
 *                           (CRLF). The file's mtime is the earliest time of the next attempt (backoff lives in
 *                           the inode: no extra write, survives restarts; `outbox retry` sets it to now).
 * <dir>/queue/<id>.sending  marker, created and fsynced (file and directory) right before the final "." of DATA
 * <dir>/failed/<id>.msg     given up (5xx, or older than max_age), with <id>.reason saying why
 * ```
 * Ids start with the enqueue time in base 36, so name order is age order.
 *
 * ## SIGKILL and power-cut safety
 * - Enqueue: write `tmp/<id>.tmp`, fsync it, rename to `queue/<id>.msg`, fsync `queue/`; only then does
 *   {@link Outbox.enqueue} resolve. A crash before the rename leaves only a temp file (never acknowledged, swept
 *   once it is old and no writer holds its lock); after the directory fsync the message survives any crash.
 * - Delivery: the body is sent; then `queue/<id>.sending` is created and fsynced; then the final "." is sent;
 *   after the 250 the `.msg` is unlinked and `queue/` fsynced, then the marker is removed.
 * - Killed before the marker exists: the server never saw the final ".", so it discards the transaction; at
 *   restart the message is sent again — delivered exactly once.
 * - Killed with the marker present and the `.msg` still there (after the "." went out, before the unlink was
 *   durable): whether the server accepted it cannot be known. Losing mail is worse than a duplicate, so the message
 *   is sent again, with the same Message-ID (it is part of the stored bytes), and logged as `possible duplicate`.
 *   So: at most twice, same Message-ID, and only when the process dies inside that window.
 * - A marker without its `.msg` is the tail of a finished delivery and is removed at open.
 *
 * @module
 */

import { writeAll } from "../net/byte_conn.ts";
import {
  DROP_PREFIX,
  type DropMeta,
  ensureMaildrop,
  isDropName,
  processUid,
  STALE_DROP_MS,
} from "./maildrop.ts";
import { formatAddressHeader } from "./mime_builder.ts";
import { hasLongLines, MessageScan } from "./seven_bit.ts";
import { Logger } from "../log/logger.ts";
import { DataWriter } from "./dot_stuffing.ts";
import {
  completeRawMessage,
  type MailMessage,
  type MessageDefaults,
  prepareMessage,
} from "./mail_message.ts";

const log = new Logger("outbox");
const encoder = new TextEncoder();
const PREFIX = "OUTPOST-QUEUE-1 ";
const MAX_META = 256 * 1024;

/**
 * Outbox settings (the `[outbox]` config table, see `smtp_config.ts`).
 *
 * @example
 * ```ts
 * const o: OutboxOptions = { dir: "/var/lib/outpost/outbox", maxAgeMs: 86_400_000, maxBytes: 64 << 20,
 *   maxMessageBytes: 25 << 20, retryMinMs: 30_000, retryMaxMs: 3_600_000 };
 * console.log(o.dir);
 * ```
 */
export interface OutboxOptions {
  /** The outbox folder; `tmp/`, `queue/` and `failed/` are made inside it (mode 0700). */
  dir: string;
  /** Give up (move to failed/) once a message is this old and its last attempt failed. Default 24 h. */
  maxAgeMs: number;
  /** Bound on the total size of queued messages in bytes; the oldest non-critical ones are dropped to stay within it. */
  maxBytes: number;
  /** Largest single message accepted, in bytes; a larger one is refused with {@link OutboxFullError}. */
  maxMessageBytes: number;
  /** First retry delay; later delays double up to `retryMaxMs`, with jitter. */
  retryMinMs: number;
  /** Longest retry delay, in ms. */
  retryMaxMs: number;
  /** Longest sleep of the delivery worker between queue scans. Default 30 s. */
  pollMs?: number;
  /** Sender and Message-ID domain for {@link MailMessage}s without `from`; the delivery worker fills it in. */
  defaults?: MessageDefaults;
  /** Where local users submit mail (`[outbox] maildrop`); default `<dir>/maildrop`. */
  maildrop?: string;
}

/**
 * What the outbox stores about a message beside its bytes.
 *
 * @example
 * ```ts
 * const m: QueueMeta = { v: 1, id: "m1x2y3z-ab12", from: "a@x", to: ["b@x"], critical: true, created: 0,
 *   messageId: "<1@x>", eightBit: false, smtputf8: false };
 * console.log(m.id, m.to);
 * ```
 */
export interface QueueMeta {
  /** Format version of the header line. */
  v: 1;
  /** The outbox id (also the file name). */
  id: string;
  /** Envelope sender; empty: `[smtp] from`, resolved when the message is sent. */
  from: string;
  /** The stored message has no From header: one is added when sending (`[smtp] from`, this name or `from_name`). */
  addFrom?: { name?: string };
  /** The maildrop file it was picked up from (so a crash while picking up never queues it twice). */
  drop?: string;
  /** Uid of the local user who submitted it through the maildrop. */
  uid?: number;
  /** Envelope recipients. */
  to: string[];
  /** Critical mail is never dropped to make room. */
  critical: boolean;
  /** Free-form label for logs and `outbox list` (the alert monitor puts the rule or sensor there). */
  tag?: string;
  /** Enqueue time, ms since the epoch (reset by `outbox retry` of a failed message). */
  created: number;
  /** The message's Message-ID header (kept across retries, so a duplicate can be recognised). */
  messageId: string;
  /** Subject, at most 200 characters, for `outbox list`. */
  subject?: string;
  /** The stored message has 8-bit bytes (sent with BODY=8BITMIME, or converted to quoted-printable). */
  eightBit: boolean;
  /** A line of the stored message is longer than 998 octets (such parts are sent quoted-printable). */
  longLines?: boolean;
  /** An envelope address is not ASCII (sent with SMTPUTF8). */
  smtputf8: boolean;
}

/**
 * One message in the outbox, as {@link Outbox.list} reports it.
 *
 * @example
 * ```ts
 * declare const outbox: Outbox; // see Outbox.open
 * for (const e of await outbox.list()) console.log(e.id, e.state, e.size, e.meta.to.join(","));
 * ```
 */
export interface OutboxEntry {
  /** The outbox id. */
  id: string;
  /** `queued` (waiting or retrying) or `failed` (given up, in `failed/`). */
  state: "queued" | "failed";
  /** What was stored with the message. */
  meta: QueueMeta;
  /** Size of the message itself (without the outbox header line). */
  size: number;
  /** Header line length: the message starts at this offset in {@link OutboxEntry.path}. */
  offset: number;
  /** The `.msg` file. */
  path: string;
  /** Earliest next attempt (queued messages). */
  notBefore: Date;
  /** True when a `.sending` marker says an earlier attempt may have reached the server. */
  inDoubt: boolean;
  /** Why it failed (failed messages). */
  reason?: string;
  /** Delivery attempts that failed so far (0 when none). */
  attempts: number;
  /** The last failed attempt's error, or null. */
  lastError: string | null;
}

/**
 * Enqueue was refused because the outbox is full of messages that may not be dropped, or the message is too big.
 *
 * @example
 * ```ts
 * import type { MailMessage } from "./mail_message.ts";
 *
 * declare const outbox: Outbox; // see Outbox.open
 * declare const msg: MailMessage; // the message to queue
 * try {
 *   await outbox.enqueue(msg);
 * } catch (e) {
 *   if (e instanceof OutboxFullError) console.error(e.message);
 * }
 * ```
 */
export class OutboxFullError extends Error {
  /** Makes the error; `message` says what was refused and why. */
  constructor(message: string) {
    super(message);
    this.name = "OutboxFullError";
  }
}

async function fsyncDir(path: string): Promise<void> {
  const d = await Deno.open(path, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}

async function removeIfExists(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function newId(): string {
  const rnd = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0"));
  return `${Date.now().toString(36).padStart(9, "0")}-${rnd.join("")}`;
}

/**
 * True for ids this outbox makes (no path tricks from the CLI).
 *
 * @example
 * ```ts
 * isOutboxId("0mhx2k9qa-3f9c01de"); // true
 * isOutboxId("../../etc/passwd"); // false
 * ```
 */
export function isOutboxId(id: string): boolean {
  return /^[0-9a-z]{9}-[0-9a-f]{8}$/.test(id);
}

/**
 * Reads the meta line of a stored message; resolves to the meta and the message offset.
 *
 * @example
 * ```ts
 * const { meta, offset } = await readQueueMeta("/var/lib/outpost/outbox/queue/m1-ab.msg");
 * console.log(meta.to, offset); // the recipients; where the message starts
 * ```
 */
export async function readQueueMeta(path: string): Promise<{ meta: QueueMeta; offset: number }> {
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(4096);
    let chunks = new Uint8Array(0);
    for (;;) {
      const n = await f.read(buf);
      if (n === null) break;
      const next = new Uint8Array(chunks.length + n);
      next.set(chunks);
      next.set(buf.subarray(0, n), chunks.length);
      chunks = next;
      const nl = chunks.indexOf(0x0a);
      if (nl >= 0) {
        const line = new TextDecoder().decode(chunks.subarray(0, nl));
        if (!line.startsWith(PREFIX)) break;
        return { meta: JSON.parse(line.slice(PREFIX.length)) as QueueMeta, offset: nl + 1 };
      }
      if (chunks.length > MAX_META) break;
    }
  } finally {
    f.close();
  }
  throw new Error(`Outbox message ${path} is damaged: its header line is missing or too long.`);
}

/**
 * The on-disk queue. See the module documentation for the layout and the crash-safety argument.
 *
 * @example
 * ```ts
 * const outbox = await Outbox.open({ dir: "/tmp/outbox", maxAgeMs: 86_400_000, maxBytes: 64 << 20,
 *   maxMessageBytes: 25 << 20, retryMinMs: 30_000, retryMaxMs: 3_600_000,
 *   defaults: { from: "pi@example.com", domain: "pi" } });
 * const id = await outbox.enqueue({ to: ["me@example.com"], subject: "hello", text: "from the pi" });
 * console.log(id);
 * ```
 */
export class Outbox {
  /** The options the outbox was opened with. */
  readonly options: OutboxOptions;
  /** `<dir>/tmp`: messages being written. */
  readonly tmpDir: string;
  /** `<dir>/queue`: accepted messages waiting for delivery. */
  readonly queueDir: string;
  /** `<dir>/failed`: messages given up on, each with a `.reason` file. */
  readonly failedDir: string;
  /** Where local users submit mail (mode 1733): `[outbox] maildrop`, default `<dir>/maildrop`. */
  readonly maildropDir: string;
  /** `<dir>/incoming`: maildrop files being copied into the queue (private). */
  readonly incomingDir: string;
  /** Ids being delivered right now (never dropped to make room). */
  readonly busy: Set<string> = new Set<string>();

  private constructor(opts: OutboxOptions) {
    this.options = opts;
    this.tmpDir = `${opts.dir}/tmp`;
    this.queueDir = `${opts.dir}/queue`;
    this.failedDir = `${opts.dir}/failed`;
    this.maildropDir = opts.maildrop ?? `${opts.dir}/maildrop`;
    this.incomingDir = `${opts.dir}/incoming`;
  }

  /**
   * Creates the folders if needed (the maildrop with mode 1733), sweeps stale temp files and markers, and queues
   * what a crash left in `incoming/`. Run by the daemon's user (or root, whose new files go to the folder's owner).
   */
  static async open(opts: OutboxOptions): Promise<Outbox> {
    const o = new Outbox(opts);
    await Deno.mkdir(opts.dir, { recursive: true, mode: 0o700 });
    const top = await Deno.stat(opts.dir);
    o.#owner = top.uid !== null && top.gid !== null ? { uid: top.uid, gid: top.gid } : null;
    for (const d of [o.tmpDir, o.queueDir, o.failedDir, o.incomingDir]) {
      try {
        await Deno.mkdir(d, { mode: 0o700 });
        await o.#adopt(d);
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
    // Submitters must reach the maildrop: every folder above it needs search permission (x) for all; listing
    // stays private. The daemon fixes the folders it owns (the outbox folder and the state folder above it).
    const above = o.maildropDir.slice(0, o.maildropDir.lastIndexOf("/"));
    for (const d of [above, above.slice(0, Math.max(1, above.lastIndexOf("/")))]) {
      const st = await Deno.stat(d).catch(() => null);
      if (!st || ((st.mode ?? 0) & 0o001) !== 0) continue;
      await Deno.chmod(d, ((st.mode ?? 0o700) & 0o7777) | 0o011).catch((e) => {
        log.warn("maildrop.unreachable", {
          dir: d,
          error: (e as Error).message,
          note: "users other than the daemon's cannot submit mail until it is searchable (chmod o+x)",
        });
      });
    }
    await ensureMaildrop(o.maildropDir);
    await sweepStale(o.tmpDir, () => true);
    for await (const e of Deno.readDir(o.queueDir)) {
      if (e.name.endsWith(".error")) {
        // Attempt counts of messages no longer queued (dropped to make room, or delivered before a crash).
        const id = e.name.slice(0, -".error".length);
        if (!(await exists(`${o.queueDir}/${id}.msg`))) await removeIfExists(`${o.queueDir}/${e.name}`);
        continue;
      }
      if (!e.name.endsWith(".sending")) continue;
      const id = e.name.slice(0, -".sending".length);
      if (!(await exists(`${o.queueDir}/${id}.msg`))) await removeIfExists(`${o.queueDir}/${e.name}`);
      else log.warn("in_doubt", { id, note: "killed after the final dot; will resend (possible duplicate)" });
    }
    return o;
  }

  /** Owner of the outbox folder: files root creates in it are handed to this user. */
  #owner: { uid: number; gid: number } | null = null;
  #pickup: Promise<number> = Promise.resolve(0);
  #junkSeen = new Set<string>();

  async #adopt(path: string): Promise<void> {
    if (this.#owner && this.#owner.uid !== 0 && processUid() === 0) {
      await Deno.chown(path, this.#owner.uid, this.#owner.gid);
    }
  }

  /**
   * Moves every complete maildrop file into the queue (see `maildrop.ts`), removes stale incomplete ones and
   * junk, and first finishes what a crash left in `incoming/`. Resolves to the number of messages queued from
   * the maildrop. Holds an flock on `<dir>/.pickup.lock`, so two processes never pick up at once. Calls are serialised; the delivery worker runs it before each
   * round and whenever the maildrop changes.
   */
  pickup(): Promise<number> {
    const run = this.#pickup.catch(() => 0).then(() => this.#pickupOnce());
    this.#pickup = run;
    return run;
  }

  async #pickupOnce(): Promise<number> {
    // One picker at a time across processes (the daemon, `outpost outbox` run by an admin).
    const lockPath = `${this.options.dir}/.pickup.lock`;
    const lock = await Deno.open(lockPath, { read: true, write: true, create: true, mode: 0o600 });
    try {
      await lock.lock(true);
      await this.#adopt(lockPath);
      await this.#recoverIncoming();
      return await this.#scanMaildrop();
    } finally {
      lock.close();
    }
  }

  async #scanMaildrop(): Promise<number> {
    const names: string[] = [];
    for await (const e of Deno.readDir(this.maildropDir)) names.push(e.name);
    names.sort();
    let n = 0;
    for (const name of names) {
      const path = `${this.maildropDir}/${name}`;
      let st: Deno.FileInfo;
      try {
        st = await Deno.lstat(path);
      } catch {
        continue;
      }
      const old = Date.now() - (st.mtime?.getTime() ?? 0) > STALE_DROP_MS;
      const complete = st.isFile && ((st.mode ?? 0) & 0o100) !== 0;
      if (!isDropName(name) || !st.isFile || (!complete && old)) {
        if (!isDropName(name) || !st.isFile) {
          if (!old && st.isFile) continue; // maybe a tool in the middle of something; look again later
          const removed = await Deno.remove(path).then(() => true, () => false);
          if (removed || !this.#junkSeen.has(name)) {
            log.warn("maildrop.junk", {
              name,
              uid: st.uid ?? undefined,
              note: removed ? "not a maildrop file; removed" : "not a maildrop file and cannot be removed",
            });
          }
          if (!removed) this.#junkSeen.add(name); // a non-empty folder a user made: say so once
          continue;
        }
        if (await unlockedOrUnreadable(path)) {
          await Deno.remove(path).catch(() => {});
          log.warn("maildrop.stale", {
            name,
            uid: st.uid ?? undefined,
            note: "incomplete and abandoned; removed",
          });
        }
        continue;
      }
      if (!complete) continue;
      try {
        await Deno.rename(path, `${this.incomingDir}/${name}`);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      await fsyncDir(this.incomingDir);
      if (await this.#takeIncoming(name)) n++;
    }
    return n;
  }

  async #recoverIncoming(): Promise<void> {
    const names: string[] = [];
    for await (const e of Deno.readDir(this.incomingDir)) names.push(e.name);
    if (names.length === 0) return;
    const queued = new Set(
      (await this.list("queued")).map((e) => e.meta.drop).filter((d) => d !== undefined),
    );
    for (const name of names.sort()) {
      if (queued.has(name)) {
        await removeIfExists(`${this.incomingDir}/${name}`);
        continue;
      }
      await this.#takeIncoming(name);
    }
  }

  /** Validates `incoming/<name>` and copies it into the queue; resolves true when it was queued. */
  async #takeIncoming(name: string): Promise<boolean> {
    const path = `${this.incomingDir}/${name}`;
    const refuse = async (reason: string, uid?: number | null) => {
      await removeIfExists(path);
      log.error("maildrop.refused", { name, uid: uid ?? undefined, reason });
      return false;
    };
    const st = await Deno.lstat(path);
    if (!st.isFile) return await refuse("not a regular file", st.uid);
    if ((st.nlink ?? 1) !== 1) return await refuse("the file has other hard links", st.uid);
    if (st.size > this.options.maxMessageBytes + MAX_META) {
      return await refuse(`larger than max_message_size (${this.options.maxMessageBytes})`, st.uid);
    }
    let drop: DropMeta;
    let offset: number;
    try {
      const r = await readHeaderLine(path, DROP_PREFIX);
      drop = checkDropMeta(r.json);
      offset = r.offset;
    } catch (e) {
      return await refuse((e as Error).message, st.uid);
    }
    const trusted = st.uid === 0 || st.uid === this.#owner?.uid;
    const id = newId();
    const tmp = `${this.tmpDir}/${id}.tmp`;
    const head = await readHead(path, offset);
    const scan = new MessageScan();
    // deno-lint-ignore no-control-regex
    const smtputf8 = [drop.from ?? "", ...drop.to].some((a) => /[^\x00-\x7f]/.test(a));
    const meta: QueueMeta = {
      v: 1,
      id,
      from: drop.from ?? "",
      to: drop.to,
      addFrom: drop.addFrom,
      critical: trusted && drop.critical === true,
      tag: drop.tag,
      created: Date.now(),
      messageId: headerValue(head, "message-id")?.slice(0, 998) ?? "",
      subject: headerValue(head, "subject")?.slice(0, 200),
      eightBit: false,
      longLines: false,
      smtputf8,
      drop: name,
      uid: st.uid ?? undefined,
    };
    const src = await Deno.open(path, { read: true });
    let size: number;
    try {
      await src.seek(offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(65536);
      const body = async (w: DataWriter) => {
        for (;;) {
          const n = await src.read(buf);
          if (n === null) return;
          const chunk = buf.subarray(0, n);
          scan.add(chunk);
          await w.write(chunk);
        }
      };
      const headLen = await this.#writeFile(
        tmp,
        meta,
        body,
        () => ({ eightBit: scan.eightBit, longLines: scan.longLines }),
      );
      size = (await Deno.stat(tmp)).size - headLen;
    } finally {
      src.close();
    }
    try {
      if (size > this.options.maxMessageBytes) {
        throw new OutboxFullError(`larger than max_message_size (${this.options.maxMessageBytes})`);
      }
      await this.#makeRoom(size, meta.critical);
      await Deno.rename(tmp, `${this.queueDir}/${id}.msg`);
      await fsyncDir(this.queueDir);
    } catch (e) {
      await removeIfExists(tmp);
      if (e instanceof OutboxFullError && !(e.message.startsWith("larger"))) {
        log.warn("maildrop.waiting", { name, reason: e.message });
        return false; // stays in incoming/ and is tried again at the next start
      }
      return await refuse((e as Error).message, st.uid);
    }
    await removeIfExists(path);
    await fsyncDir(this.incomingDir);
    log.info("enqueued", { id, to: meta.to.length, uid: meta.uid, tag: meta.tag, source: "maildrop" });
    return true;
  }

  /** Sets the sender/domain defaults used for messages without `from` (the delivery worker does this). */
  setDefaults(defaults: MessageDefaults): void {
    this.options.defaults ??= defaults;
  }

  /**
   * Durably stores the message (temp file, fsync, rename, fsync the folder) and resolves to its id. Never sends.
   * A raw message (from sendmail) is completed with Date/Message-ID when missing; without `envelope` its
   * recipients come from To/Cc/Bcc.
   */
  async enqueue(
    msg: MailMessage | Uint8Array,
    opts: { critical?: boolean; tag?: string; envelope?: { from: string; to: string[] } } = {},
  ): Promise<string> {
    const id = newId();
    const defaults = this.options.defaults;
    const tmp = `${this.tmpDir}/${id}.tmp`;
    let meta: QueueMeta;
    let write: (w: DataWriter) => Promise<void>;
    if (msg instanceof Uint8Array) {
      const d = defaults ?? { from: opts.envelope?.from ?? "", domain: "localhost" };
      const raw = completeRawMessage(msg, {
        defaults: d,
        extractRecipients: opts.envelope === undefined,
        recipients: opts.envelope?.to ?? [],
        envelopeFrom: opts.envelope?.from,
      });
      if (raw.bytes.length > this.options.maxMessageBytes) {
        throw new OutboxFullError(
          `Message refused: it is ${raw.bytes.length} bytes, more than max_message_size ` +
            `(${this.options.maxMessageBytes}).`,
        );
      }
      meta = {
        v: 1,
        id,
        ...raw.envelope,
        critical: opts.critical ?? false,
        tag: opts.tag,
        created: Date.now(),
        messageId: raw.messageId,
        subject: subjectOf(raw.bytes),
        eightBit: raw.eightBit,
        longLines: hasLongLines(raw.bytes),
        smtputf8: raw.smtputf8,
      };
      write = (w) => w.write(raw.bytes);
    } else {
      const p = prepareMessage(msg, defaults ?? { from: "", domain: "localhost" }, { deferFrom: true });
      meta = {
        v: 1,
        id,
        ...(opts.envelope ?? p.envelope),
        ...(msg.from ? {} : { addFrom: {} }),
        critical: opts.critical ?? false,
        tag: opts.tag,
        created: Date.now(),
        messageId: p.messageId,
        subject: msg.subject.slice(0, 200),
        eightBit: false,
        smtputf8: p.smtputf8,
      };
      write = (w) => p.render(w);
    }
    const offset = await this.#writeFile(tmp, meta, write);
    try {
      const size = (await Deno.stat(tmp)).size - offset;
      if (size > this.options.maxMessageBytes) {
        throw new OutboxFullError(
          `Message refused: it is ${size} bytes, more than max_message_size (${this.options.maxMessageBytes}).`,
        );
      }
      await this.#makeRoom(size, meta.critical);
      await Deno.rename(tmp, `${this.queueDir}/${id}.msg`);
      await fsyncDir(this.queueDir);
    } catch (e) {
      await removeIfExists(tmp);
      throw e;
    }
    log.info("enqueued", { id, to: meta.to.length, critical: meta.critical, tag: meta.tag });
    return id;
  }

  /**
   * Writes meta line + message to `path` with one reused buffer (holding an flock, so a sweep never removes it)
   * and fsyncs it; resolves to the body offset. Flags that `flagsAfter` reports true once the body is written
   * are patched in place in the meta line (`"eightBit":false` becomes `"eightBit":true `: same length, still JSON).
   */
  async #writeFile(
    path: string,
    meta: QueueMeta,
    body: (w: DataWriter) => Promise<void>,
    flagsAfter?: () => { eightBit: boolean; longLines: boolean },
  ): Promise<number> {
    const f = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    try {
      await f.lock(true);
      await this.#adopt(path);
      const text = PREFIX + JSON.stringify(meta) + "\n";
      const head = encoder.encode(text);
      await writeAll(f, head);
      const w = new DataWriter({ write: (d) => writeAll(f, d) }, { dotStuff: false, bufferSize: 65536 });
      await body(w);
      await w.end();
      const flags = flagsAfter?.() ?? { eightBit: false, longLines: false };
      for (const key of ["eightBit", "longLines"] as const) {
        const at = text.indexOf(`"${key}":false`);
        if (!flags[key] || at < 0) continue;
        await f.seek(encoder.encode(text.slice(0, at)).length + key.length + 3, Deno.SeekMode.Start);
        await writeAll(f, encoder.encode("true "));
      }
      await f.sync();
      return head.length;
    } catch (e) {
      f.close();
      await removeIfExists(path);
      throw e;
    } finally {
      try {
        f.close();
      } catch {
        // Closed in the catch above.
      }
    }
  }

  async #makeRoom(incoming: number, critical: boolean): Promise<void> {
    const entries = await this.list("queued");
    let total = entries.reduce((s, e) => s + e.size, 0);
    if (total + incoming <= this.options.maxBytes) return;
    for (const e of entries) {
      if (total + incoming <= this.options.maxBytes) break;
      if (e.meta.critical || this.busy.has(e.id)) continue;
      if (await removeIfExists(e.path)) {
        await removeIfExists(`${this.queueDir}/${e.id}.sending`);
        await removeIfExists(`${this.queueDir}/${e.id}.error`);
        total -= e.size;
        log.warn("dropped", {
          id: e.id,
          size: e.size,
          reason: "outbox over max_size",
          subject: e.meta.subject,
        });
      }
    }
    if (total + incoming <= this.options.maxBytes) return;
    if (critical) {
      log.warn("over_limit", { total: total + incoming, max: this.options.maxBytes, note: "critical kept" });
      return;
    }
    throw new OutboxFullError(
      `Message refused: the outbox holds ${total} bytes of critical mail and max_size is ${this.options.maxBytes}.`,
    );
  }

  /** Lists queued and/or failed messages, oldest first. */
  async list(state?: "queued" | "failed"): Promise<OutboxEntry[]> {
    const out: OutboxEntry[] = [];
    for (const st of state ? [state] : ["queued", "failed"] as const) {
      const dir = st === "queued" ? this.queueDir : this.failedDir;
      const names: string[] = [];
      for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".msg")) names.push(e.name);
      names.sort();
      for (const name of names) {
        const id = name.slice(0, -4);
        const path = `${dir}/${name}`;
        try {
          const [stat, { meta, offset }] = await Promise.all([Deno.stat(path), readQueueMeta(path)]);
          const entry: OutboxEntry = {
            id,
            state: st,
            meta,
            size: stat.size - offset,
            offset,
            path,
            notBefore: stat.mtime ?? new Date(0),
            inDoubt: st === "queued" && await exists(`${dir}/${id}.sending`),
            ...(await readAttempts(`${dir}/${id}.error`)),
          };
          if (st === "failed") entry.reason = await Deno.readTextFile(`${dir}/${id}.reason`).catch(() => "");
          out.push(entry);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) continue; // delivered or purged meanwhile
          log.error("damaged", { path, error: e instanceof Error ? e.message : String(e) });
        }
      }
    }
    return out;
  }

  /** Number of queued messages, optionally only those with `tag`. */
  async pendingCount(tag?: string): Promise<number> {
    if (tag === undefined) {
      let n = 0;
      for await (const e of Deno.readDir(this.queueDir)) if (e.name.endsWith(".msg")) n++;
      return n;
    }
    return (await this.list("queued")).filter((e) => e.meta.tag === tag).length;
  }

  /**
   * Queued messages with one of `tags` that could still be withdrawn: not being sent and not possibly delivered
   * already (no `.sending` marker). The alert monitor replaces such stale mail with a newer one.
   */
  async pending(tags: string[]): Promise<{ id: string; subject: string }[]> {
    const want = new Set(tags);
    return (await this.list("queued"))
      .filter((e) => e.meta.tag !== undefined && want.has(e.meta.tag) && !e.inDoubt && !this.busy.has(e.id))
      .map((e) => ({ id: e.id, subject: e.meta.subject ?? "" }));
  }

  /**
   * Removes queued messages that a newer mail replaces, skipping any that started sending meanwhile or may have
   * reached the server. Resolves to the number removed (each is logged as superseded).
   */
  async withdraw(ids: string[]): Promise<number> {
    let n = 0;
    for (const id of ids) {
      if (!isOutboxId(id) || this.busy.has(id) || await exists(`${this.queueDir}/${id}.sending`)) continue;
      if (await removeIfExists(`${this.queueDir}/${id}.msg`)) {
        await removeIfExists(`${this.queueDir}/${id}.error`);
        n++;
        log.info("superseded", { id });
      }
    }
    if (n > 0) await fsyncDir(this.queueDir);
    return n;
  }

  /** How many times a `.sending` marker says the final "." went out without a recorded 250 (0: never). */
  async inDoubtCount(id: string): Promise<number> {
    try {
      const text = await Deno.readTextFile(`${this.queueDir}/${id}.sending`);
      return Math.max(1, text.split("\n").filter((l) => l.trim() !== "").length);
    } catch {
      return 0;
    }
  }

  /** Creates and fsyncs the `.sending` marker (the worker calls this right before the final "."). */
  async markSending(id: string): Promise<void> {
    const path = `${this.queueDir}/${id}.sending`;
    // One line per attempt that reached the final ".": the worker counts them to bound in-doubt resends.
    const f = await Deno.open(path, { write: true, create: true, append: true, mode: 0o600 });
    try {
      await this.#adopt(path);
      await writeAll(f, encoder.encode(new Date().toISOString() + "\n"));
      await f.sync();
    } finally {
      f.close();
    }
    await fsyncDir(this.queueDir);
  }

  /** Removes the `.sending` marker (the attempt failed before the final "." went out). */
  async clearSending(id: string): Promise<void> {
    await removeIfExists(`${this.queueDir}/${id}.sending`);
  }

  /** The server said 250: removes the message durably, then its marker. */
  async delivered(id: string): Promise<void> {
    await removeIfExists(`${this.queueDir}/${id}.msg`);
    await fsyncDir(this.queueDir);
    await removeIfExists(`${this.queueDir}/${id}.sending`);
    await removeIfExists(`${this.queueDir}/${id}.error`);
  }

  /**
   * Postpones the next attempt until `until` (stored as the file's mtime). With `error`, counts a failed attempt
   * in `<id>.error` (attempts and the last error, for `outpost outbox list`; written only when an attempt fails).
   */
  async defer(id: string, until: Date, error?: string): Promise<void> {
    if (error !== undefined) {
      const path = `${this.queueDir}/${id}.error`;
      const { attempts } = await readAttempts(path);
      await Deno.writeTextFile(
        path,
        JSON.stringify({ attempts: attempts + 1, error: error.slice(0, 1000) }) + "\n",
      );
      await this.#adopt(path);
    }
    try {
      await Deno.utime(`${this.queueDir}/${id}.msg`, new Date(), until);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  /** Moves a queued message to failed/ with `reason`. */
  async fail(id: string, reason: string): Promise<void> {
    await Deno.writeTextFile(`${this.failedDir}/${id}.reason`, reason + "\n");
    await this.#adopt(`${this.failedDir}/${id}.reason`);
    await Deno.rename(`${this.queueDir}/${id}.msg`, `${this.failedDir}/${id}.msg`);
    await fsyncDir(this.failedDir);
    await fsyncDir(this.queueDir);
    await removeIfExists(`${this.queueDir}/${id}.sending`);
    await Deno.rename(`${this.queueDir}/${id}.error`, `${this.failedDir}/${id}.error`).catch(() => {});
  }

  /**
   * Stores a copy of message `id` for `to` only (recipients refused with a 4xx while others accepted), as a new
   * queued message with the same bytes, Message-ID and age. Resolves to the new id.
   */
  async requeueFor(id: string, to: string[]): Promise<string> {
    return await this.#copy(`${this.queueDir}/${id}.msg`, (m) => ({ ...m, to }));
  }

  async #copy(src: string, change: (m: QueueMeta) => QueueMeta): Promise<string> {
    const { meta, offset } = await readQueueMeta(src);
    const id = newId();
    const tmp = `${this.tmpDir}/${id}.tmp`;
    const f = await Deno.open(src, { read: true });
    try {
      await f.seek(offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(65536);
      await this.#writeFile(tmp, { ...change(meta), id }, async (w) => {
        for (;;) {
          const n = await f.read(buf);
          if (n === null) return;
          await w.write(buf.subarray(0, n));
        }
      });
    } finally {
      f.close();
    }
    await Deno.rename(tmp, `${this.queueDir}/${id}.msg`);
    await fsyncDir(this.queueDir);
    return id;
  }

  /**
   * Makes messages due now: a queued one gets its backoff cleared, a failed one goes back to the queue with a
   * fresh age. Without `id`, all of them. Resolves to the number of messages affected.
   */
  async retry(id?: string): Promise<number> {
    if (id !== undefined && !isOutboxId(id)) {
      throw new Error(`Outbox retry failed: "${id}" is not a message id.`);
    }
    let n = 0;
    for (const e of await this.list()) {
      if (id !== undefined && e.id !== id) continue;
      if (e.state === "queued") {
        await this.defer(e.id, new Date());
      } else {
        await this.#copy(e.path, (m) => ({ ...m, created: Date.now() }));
        await removeIfExists(e.path);
        await removeIfExists(`${this.failedDir}/${e.id}.reason`);
        await removeIfExists(`${this.failedDir}/${e.id}.error`);
      }
      n++;
    }
    return n;
  }

  /** Deletes messages (queued and failed; only `id` when given). Resolves to the number deleted. */
  async purge(id?: string): Promise<number> {
    if (id !== undefined && !isOutboxId(id)) {
      throw new Error(`Outbox purge failed: "${id}" is not a message id.`);
    }
    let n = 0;
    for (const e of await this.list()) {
      if (id !== undefined && e.id !== id) continue;
      if (await removeIfExists(e.path)) n++;
      const dir = e.state === "queued" ? this.queueDir : this.failedDir;
      await removeIfExists(`${dir}/${e.id}.sending`);
      await removeIfExists(`${dir}/${e.id}.reason`);
      await removeIfExists(`${dir}/${e.id}.error`);
      log.info("purged", { id: e.id });
    }
    return n;
  }
}

async function readAttempts(path: string): Promise<{ attempts: number; lastError: string | null }> {
  try {
    const j = JSON.parse(await Deno.readTextFile(path));
    return {
      attempts: Number.isInteger(j.attempts) ? j.attempts : 0,
      lastError: typeof j.error === "string" ? j.error : null,
    };
  } catch {
    return { attempts: 0, lastError: null };
  }
}

/** Sweeps `dir` of files older than {@link STALE_DROP_MS} whose writer no longer holds the lock. */
async function sweepStale(dir: string, match: (name: string) => boolean): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (!match(e.name)) continue;
    const path = `${dir}/${e.name}`;
    try {
      const st = await Deno.lstat(path);
      if (Date.now() - (st.mtime?.getTime() ?? 0) <= STALE_DROP_MS) continue;
      if (!st.isFile || await unlockedOrUnreadable(path)) {
        await removeIfExists(path);
        log.warn("tmp.stale", { path, note: "unfinished and abandoned; removed" });
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
}

/** True when nobody holds a lock on `path` (or it cannot even be opened, so it can never be delivered). */
async function unlockedOrUnreadable(path: string): Promise<boolean> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch (e) {
    return !(e instanceof Deno.errors.NotFound);
  }
  try {
    return await f.tryLock(true);
  } finally {
    f.close();
  }
}

/** Reads the first line of `path`, which must start with `prefix` and hold JSON. */
async function readHeaderLine(path: string, prefix: string): Promise<{ json: unknown; offset: number }> {
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(MAX_META + 1);
    let len = 0;
    for (;;) {
      const n = await f.read(buf.subarray(len));
      if (n === null) break;
      len += n;
      const nl = buf.subarray(0, len).indexOf(0x0a);
      if (nl >= 0) {
        const line = new TextDecoder().decode(buf.subarray(0, nl));
        if (!line.startsWith(prefix)) break;
        return { json: JSON.parse(line.slice(prefix.length)), offset: nl + 1 };
      }
      if (len >= buf.length) break;
    }
  } finally {
    f.close();
  }
  throw new Error(`its first line is not an "${prefix.trim()}" envelope`);
}

function isEnvelopeAddress(a: unknown): a is string {
  if (typeof a !== "string" || a.length > 320) return false;
  // deno-lint-ignore no-control-regex
  return /^[^\s@<>(),;:"\\\x00-\x1f]+@[^\s@<>(),;:"\\\x00-\x1f]+$/.test(a);
}

/** Checks an envelope a (possibly hostile) local user wrote; throws saying what is wrong. */
function checkDropMeta(j: unknown): DropMeta {
  if (typeof j !== "object" || j === null || Array.isArray(j)) {
    throw new Error("the envelope is not an object");
  }
  const o = j as Record<string, unknown>;
  const to = o.to;
  if (!Array.isArray(to) || to.length === 0 || to.length > 1000 || !to.every(isEnvelopeAddress)) {
    throw new Error("the envelope has no valid recipient list");
  }
  if (o.from !== undefined && !isEnvelopeAddress(o.from)) {
    throw new Error("the envelope sender is not an address");
  }
  let addFrom: DropMeta["addFrom"];
  if (o.addFrom !== undefined) {
    const a = o.addFrom as Record<string, unknown>;
    if (typeof a !== "object" || a === null || (a.name !== undefined && typeof a.name !== "string")) {
      throw new Error("the envelope's addFrom is malformed");
    }
    // deno-lint-ignore no-control-regex
    if (typeof a.name === "string" && (/[\x00-\x1f\x7f]/.test(a.name) || a.name.length > 200)) {
      throw new Error("the envelope's display name has control characters or is too long");
    }
    addFrom = a.name === undefined ? {} : { name: a.name as string };
  }
  const tag = typeof o.tag === "string" && /^[A-Za-z0-9_.:-]{1,40}$/.test(o.tag) ? o.tag : undefined;
  return {
    to: [...new Set(to)],
    from: o.from as string | undefined,
    addFrom,
    tag,
    critical: o.critical === true,
  };
}

/** The first 16 KiB after `offset` (enough for the headers outpost looks at). */
async function readHead(path: string, offset: number): Promise<string> {
  const f = await Deno.open(path, { read: true });
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(16384);
    let len = 0;
    while (len < buf.length) {
      const n = await f.read(buf.subarray(len));
      if (n === null) break;
      len += n;
    }
    return new TextDecoder().decode(buf.subarray(0, len)).split(/\r?\n\r?\n/)[0];
  } finally {
    f.close();
  }
}

function headerValue(head: string, name: string): string | undefined {
  const re = new RegExp(`^${name}:[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)`, "im");
  const m = re.exec(head);
  return m ? m[1].replace(/\r?\n[ \t]+/g, " ").trim() : undefined;
}

/**
 * The bytes the worker sends in front of a stored message: a From header when the message was stored without
 * one (`[smtp] from` and `from_name` as configured when it is sent). Empty otherwise.
 *
 * @example
 * ```ts
 * declare const entry: OutboxEntry; // from Outbox.list
 * const prefix = sendPrefix(entry.meta, { from: "pi@example.com", fromName: "pi" });
 * console.log(prefix.length); // 0 unless a From header is added
 * ```
 */
export function sendPrefix(meta: QueueMeta, sender: { from: string; fromName?: string }): Uint8Array {
  if (!meta.addFrom) return new Uint8Array(0);
  const name = meta.addFrom.name ?? sender.fromName ?? "";
  return encoder.encode(formatAddressHeader("From", [{ name, address: sender.from }]));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

function subjectOf(bytes: Uint8Array): string | undefined {
  const head = new TextDecoder().decode(bytes.subarray(0, Math.min(bytes.length, 16384)));
  const m = /^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(head.split(/\r?\n\r?\n/)[0]);
  return m ? m[1].replace(/\r?\n[ \t]+/g, " ").slice(0, 200) : undefined;
}

/**
 * A {@link MessageSource}-shaped reader of a stored message: streams `size` bytes from `offset` of `path` through
 * `buf` (reused) into the DATA writer.
 *
 * @example
 * ```ts
 * declare const entry: OutboxEntry; // from Outbox.list
 * const src = fileMessageSource(entry.path, entry.offset, entry.size, entry.meta, new Uint8Array(65536));
 * console.log(src.size);
 * ```
 */
export function fileMessageSource(
  path: string,
  offset: number,
  size: number,
  flags: { eightBit: boolean; smtputf8: boolean; longLines?: boolean },
  buf: Uint8Array,
): {
  size: number;
  eightBit: boolean;
  longLines?: boolean;
  smtputf8: boolean;
  write(w: Pick<DataWriter, "write">): Promise<void>;
} {
  return {
    size,
    eightBit: flags.eightBit,
    longLines: flags.longLines,
    smtputf8: flags.smtputf8,
    async write(w) {
      const file = await Deno.open(path, { read: true });
      try {
        await file.seek(offset, Deno.SeekMode.Start);
        for (;;) {
          const n = await file.read(buf);
          if (n === null) return;
          await w.write(buf.subarray(0, n));
        }
      } finally {
        file.close();
      }
    },
  };
}
