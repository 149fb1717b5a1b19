/**
 * The maildrop: how any local user (root, `pi`, a cron job, a service user) hands a message to the daemon, which
 * runs as `outpost` and alone owns the queue.
 *
 * This is Postfix's world-writable maildrop, adapted to a daemon that cannot switch user ids:
 *
 * - `<outbox>/maildrop` is owned by the daemon's user, mode `1733`: everyone may create files in it, nobody but the
 *   owner may list it (no `r` for others), and the sticky bit stops users from renaming or deleting each other's
 *   files.
 * - A submitter creates `<time>-<128 random bits>` with `O_EXCL`, makes it readable (`0644`, so the daemon can
 *   read it; nobody else can find the name), takes an exclusive `flock` on it, streams the message into it, fsyncs
 *   it and only then sets the owner-execute bit (`0744`) and fsyncs again. The execute bit means "complete", as
 *   Postfix's postdrop marks a finished maildrop file. Submitters never touch a file they did not create, so any
 *   number of them can write at once.
 * - The daemon renames each complete file into its private `<outbox>/incoming/` (0700; from then on the
 *   submitter cannot swap the name for a symlink or a FIFO), checks it is a regular file with one link, validates
 *   the envelope line, copies it into `queue/` (temp file, fsync, rename, fsync) and deletes it. A file left in
 *   `incoming/` by a crash is processed again at the next start (recognised by name, so it is never queued twice).
 * - An incomplete file is "in use" while its writer holds the lock. The daemon removes one only when it is older
 *   than {@link STALE_DROP_MS} and the lock can be taken.
 *
 * File format: one line `OUTPOST-DROP-1 {json}` ({@link DropMeta}), then the message with CRLF line ends.
 *
 * @module
 */

import { availableBytes } from "../util/free_space.ts";
import { writeAll } from "../net/byte_conn.ts";
import { DataWriter } from "./dot_stuffing.ts";

/** First bytes of a maildrop file. */
export const DROP_PREFIX = "OUTPOST-DROP-1 ";

/** An incomplete maildrop file whose writer no longer holds its lock is removed after this long (1 hour). */
export const STALE_DROP_MS = 3_600_000;

/** Mode of the maildrop folder: sticky, writable and searchable by all, listable only by the daemon's user. */
export const MAILDROP_MODE = 0o1733;

/**
 * The envelope a submitter writes in front of its message. Everything in it is checked again by the daemon.
 *
 * @example
 * ```ts
 * const m: DropMeta = { to: ["me@example.com"], tag: "sendmail", addFrom: { name: "CronDaemon" } };
 * console.log(m.to);
 * ```
 */
export interface DropMeta {
  /** Envelope recipients (real addresses; local names were already resolved through `[smtp] aliases`). */
  to: string[];
  /** Envelope sender given by the caller (`sendmail -f`); absent: `[smtp] from`, resolved when sent. */
  from?: string;
  /** The message has no From header: the daemon adds one when sending, from `[smtp] from` and this name. */
  addFrom?: { name?: string };
  /** Label for logs and `outbox list`. */
  tag?: string;
  /** Never dropped when the outbox is full (honoured only for root and the daemon's own user). */
  critical?: boolean;
}

/**
 * The message is over `max_message_size`; nothing was kept. Maps to exit status 65.
 *
 * @example
 * ```ts
 * import type { DataWriter } from "./dot_stuffing.ts";
 *
 * declare const o: SubmitOptions; // the [outbox] settings
 * declare const meta: DropMeta; // the envelope
 * declare const body: (w: DataWriter) => Promise<void>; // writes the message
 * try {
 *   await submitToMaildrop(o, meta, body);
 * } catch (e) {
 *   if (e instanceof MessageTooLargeError) Deno.exit(65);
 *   throw e;
 * }
 * ```
 */
export class MessageTooLargeError extends Error {
  /** Makes the error; `message` says how big the limit is. */
  constructor(message: string) {
    super(message);
    this.name = "MessageTooLargeError";
  }
}

/**
 * The maildrop cannot take the message right now (missing folder, permissions, disk). Maps to exit status 75.
 *
 * @example
 * ```ts
 * try {
 *   await ensureMaildrop("/var/lib/outpost/outbox/maildrop");
 * } catch (e) {
 *   if (e instanceof MaildropUnavailableError) console.error(e.message);
 * }
 * ```
 */
export class MaildropUnavailableError extends Error {
  /** Makes the error; `message` says which folder and why. */
  constructor(message: string) {
    super(message);
    this.name = "MaildropUnavailableError";
  }
}

/**
 * True for names submitters create (the daemon ignores anything else and removes it when old).
 *
 * @example
 * ```ts
 * isDropName("mi2k3x9a-0123456789abcdef0123456789abcdef"); // true
 * ```
 */
export function isDropName(name: string): boolean {
  return /^[0-9a-z]{6,12}-[0-9a-f]{32}$/.test(name);
}

function dropName(): string {
  const rnd = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0"));
  return `${Date.now().toString(36)}-${rnd.join("")}`;
}

/**
 * Creates the maildrop folder when it is missing and this process may: the daemon's own user, or root (which
 * hands it to the owner of the outbox folder). Sets mode 1733 on a folder this process owns.
 *
 * @example
 * ```ts
 * await ensureMaildrop("/var/lib/outpost/outbox/maildrop");
 * ```
 */
export async function ensureMaildrop(path: string): Promise<void> {
  const parent = path.slice(0, Math.max(1, path.lastIndexOf("/")));
  let st: Deno.FileInfo | null = null;
  try {
    st = await Deno.lstat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const uid = processUid();
  if (st === null) {
    // Create it, and any missing folder above it, owned like the nearest existing folder (root hands them to
    // the daemon's user; anyone else can only do it in a folder of their own).
    const missing: string[] = [path];
    let top = parent;
    let p: Deno.FileInfo;
    for (;;) {
      try {
        p = await Deno.stat(top);
        break;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound) || top === "/") throw e;
        missing.unshift(top);
        top = top.slice(0, Math.max(1, top.lastIndexOf("/")));
      }
    }
    if (uid !== null && uid !== 0 && p.uid !== uid) {
      throw new MaildropUnavailableError(
        `the maildrop folder ${path} does not exist yet; start the outpost daemon once (it creates it)`,
      );
    }
    for (const d of missing) {
      try {
        await Deno.mkdir(d, { mode: 0o700 });
      } catch (e) {
        if (e instanceof Deno.errors.PermissionDenied) {
          throw new MaildropUnavailableError(
            `the maildrop folder ${path} does not exist yet and cannot be created here; start the outpost daemon once`,
          );
        }
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
      if (uid === 0 && p.uid !== null && p.uid !== 0) await Deno.chown(d, p.uid, p.gid);
      await Deno.chmod(d, d === path ? MAILDROP_MODE : 0o711);
    }
    return;
  }
  if (!st.isDirectory) throw new MaildropUnavailableError(`the maildrop ${path} is not a folder`);
  if (((st.mode ?? 0) & 0o7777) !== MAILDROP_MODE && (uid === null || st.uid === uid)) {
    // Only the owner may fix the mode; anyone else just tries to submit.
    await Deno.chmod(path, MAILDROP_MODE).catch(() => {});
  }
}

/**
 * The process's user id, or null when the Deno sandbox does not allow asking (`--allow-sys=uid`); the daemon
 * works without it.
 *
 * @example
 * ```ts
 * if (processUid() === 0) console.log("running as root");
 * ```
 */
export function processUid(): number | null {
  try {
    return Deno.permissions.querySync({ name: "sys", kind: "uid" }).state === "granted" ? Deno.uid() : null;
  } catch {
    return null;
  }
}

/**
 * Options for {@link submitToMaildrop}.
 *
 * @example
 * ```ts
 * const o: SubmitOptions = { maildrop: "/var/lib/outpost/outbox/maildrop", maxMessageBytes: 25 << 20 };
 * console.log(o.maildrop);
 * ```
 */
export interface SubmitOptions {
  /** The maildrop folder (`[outbox] maildrop`). */
  maildrop: string;
  /** Largest message accepted (`[outbox] max_message_size`), counted as stored (CRLF line ends). */
  maxMessageBytes: number;
  /**
   * Free space the submission must leave on the maildrop's file system; less is refused up front with
   * {@link MaildropUnavailableError} (try again later). Default 1.5 x `maxMessageBytes`, as Postfix's smtpd keeps
   * 1.5 x message_size_limit free: a local user cannot take the space the daemon's own alerts need.
   */
  minFreeBytes?: number;
}

/** Bytes as "12.3 MiB" for messages a person reads. */
function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** ENOSPC (or a quota) from a write: the disk filled up under the message. */
function isDiskFull(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === "ENOSPC" || code === "EDQUOT" ||
    /os error (28|122)\b|No space left|quota exceeded/i.test(String(e));
}

/**
 * Streams one message into the maildrop and resolves to its file name once it is durable and marked complete.
 * `body` writes the message through a {@link DataWriter} (line ends become CRLF). Over `maxMessageBytes` it
 * throws {@link MessageTooLargeError} as soon as the limit is passed and leaves nothing behind; any other failure
 * also removes the partial file.
 *
 * @example
 * ```ts
 * const maildrop = "/var/lib/outpost/outbox/maildrop"; // the [outbox] maildrop setting
 * const name = await submitToMaildrop({ maildrop, maxMessageBytes: 25 << 20 }, { to: ["me@example.com"] },
 *   (w) => w.write(new TextEncoder().encode("Subject: hi\n\nhello\n")));
 * console.log(name);
 * ```
 */
export async function submitToMaildrop(
  opts: SubmitOptions,
  meta: DropMeta,
  body: (w: DataWriter) => Promise<void>,
): Promise<string> {
  await ensureMaildrop(opts.maildrop).catch((e) => {
    if (e instanceof MaildropUnavailableError) throw e;
    throw new MaildropUnavailableError(
      `cannot use the maildrop folder ${opts.maildrop}: ${(e as Error).message}`,
    );
  });
  const keep = opts.minFreeBytes ?? Math.ceil(opts.maxMessageBytes * 1.5);
  if (keep > 0) {
    const free = await availableBytes(opts.maildrop);
    if (free !== null && free < keep) {
      throw new MaildropUnavailableError(
        `the disk holding the mail queue has ${mib(free)} free, and outpost keeps ${mib(keep)} free ` +
          "(1.5 x [outbox] max_message_size) for the daemon's own alerts; free some space and try again",
      );
    }
  }
  const name = dropName();
  const path = `${opts.maildrop}/${name}`;
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  } catch (e) {
    throw new MaildropUnavailableError(
      `cannot create a file in the maildrop folder ${opts.maildrop}: ${(e as Error).message}`,
    );
  }
  try {
    await f.lock(true);
    await Deno.chmod(path, 0o644);
    const head = new TextEncoder().encode(DROP_PREFIX + JSON.stringify(meta) + "\n");
    await writeAll(f, head);
    let size = 0;
    const w = new DataWriter({
      write: async (d) => {
        size += d.length;
        if (size > opts.maxMessageBytes) {
          throw new MessageTooLargeError(
            `the message is larger than max_message_size (${opts.maxMessageBytes} bytes)`,
          );
        }
        await writeAll(f, d);
      },
    }, { dotStuff: false, bufferSize: 65536 });
    await body(w);
    await w.end();
    await f.sync();
    await Deno.chmod(path, 0o744);
    await f.sync();
  } catch (e) {
    try {
      f.close();
    } catch {
      // Already closed.
    }
    await Deno.remove(path).catch(() => {});
    if (isDiskFull(e)) {
      throw new MaildropUnavailableError(
        `the disk is full: the message did not fit in the maildrop folder ${opts.maildrop}; nothing was queued`,
      );
    }
    throw e;
  }
  f.close();
  return name;
}
