/**
 * The FTP jail: maps a user's virtual paths ("/", "/a/b") onto one host directory and refuses anything that
 * would leave it — `..`, absolute paths, NUL/CR/LF, and symlinks (anywhere on the path) that point outside.
 *
 * Every file system call is async so a slow SD card stalls no other session. Error messages sent to clients
 * ({@link FtpFsError}) never contain a host path. Uploads are atomic: they go to a hidden temp file in the target
 * directory and are renamed over the target only on success.
 *
 * Races with local processes (a directory swapped for a symlink between the check and the call): Deno has no
 * `openat`, and `/proc/self/fd/N` paths need `--allow-all`, but a relative path is resolved by the kernel from the
 * process's working directory. So every operation that changes or opens a user's file first checks the path, then
 * **pins** the directory it acts in: `chdir` to it and read back `getcwd()` (the kernel's answer for that very
 * directory, wherever the path now leads), refuse unless that lies inside the root, and act with a relative name,
 * synchronously, in the same turn (no other code runs while the working directory is moved). The final component
 * is never followed: `lstat`, `O_EXCL` creates, `O_NOFOLLOW` opens, and an open file's inode must match the entry.
 * See the README ("What remains") for what this does not cover.
 *
 * @module
 */

import * as nodeFs from "node:fs";
import { availableBytes } from "../util/free_space.ts";
import { FdFile, type FtpFile, NotRegularFileError } from "./fd_file.ts";

/**
 * What a user may do. Checked by the session before it calls the file system; a command whose permission is
 * missing is answered with 550 "Permission denied.".
 *
 * @example
 * ```ts
 * const uploader: FtpPermissions = { ...READ_ONLY, write: true, mkdir: true };
 * console.log(uploader.write); // true
 * ```
 */
export interface FtpPermissions {
  /** LIST, NLST, MLSD, MLST, STAT with a path, SIZE and MDTM. */
  list: boolean;
  /** RETR (download). */
  read: boolean;
  /** STOR and STOU (upload; replaces an existing file). */
  write: boolean;
  /** APPE (append to a file, or create it). */
  append: boolean;
  /** DELE (files) and RMD/XRMD (empty folders). */
  delete: boolean;
  /** MKD/XMKD. */
  mkdir: boolean;
  /** RNFR + RNTO. */
  rename: boolean;
  /** SITE CHMOD (permission bits). */
  chmod: boolean;
}

/**
 * List and download only (anonymous users get this).
 *
 * @example
 * ```ts
 * if (!READ_ONLY.write) console.log("uploads refused");
 * ```
 */
export const READ_ONLY: FtpPermissions = Object.freeze({
  list: true,
  read: true,
  write: false,
  append: false,
  delete: false,
  mkdir: false,
  rename: false,
  chmod: false,
});

/**
 * Everything.
 *
 * @example
 * ```ts
 * const perms = FULL_ACCESS; // list, read, write, append, delete, mkdir, rename, chmod
 * console.log(perms.chmod); // true
 * ```
 */
export const FULL_ACCESS: FtpPermissions = Object.freeze({
  list: true,
  read: true,
  write: true,
  append: true,
  delete: true,
  mkdir: true,
  rename: true,
  chmod: true,
});

const PERMISSION_WORDS = ["list", "read", "write", "append", "delete", "mkdir", "rename", "chmod"] as const;

/**
 * Parses permission words from the config (`["list", "read", "write"]`). `"all"` grants everything and
 * `"read-only"` means list + read. Returns the problem as text for an unknown word.
 *
 * @example
 * ```ts
 * parsePermissions(["list", "read"]); // { list: true, read: true, write: false, ... }
 * parsePermissions(["fly"]); // 'has unknown permission "fly" (use list, read, write, ...)'
 * ```
 */
export function parsePermissions(words: string[]): FtpPermissions | string {
  const p: FtpPermissions = {
    list: false,
    read: false,
    write: false,
    append: false,
    delete: false,
    mkdir: false,
    rename: false,
    chmod: false,
  };
  for (const raw of words) {
    const w = raw.trim().toLowerCase();
    if (w === "all") {
      Object.assign(p, FULL_ACCESS);
    } else if (w === "read-only" || w === "readonly") {
      Object.assign(p, { list: true, read: true });
    } else if ((PERMISSION_WORDS as readonly string[]).includes(w)) {
      p[w as keyof FtpPermissions] = true;
    } else {
      return `has unknown permission ${JSON.stringify(raw)} (use ${
        PERMISSION_WORDS.join(", ")
      }, all or read-only)`;
    }
  }
  return p;
}

/**
 * Reply codes an {@link FtpFsError} carries: 450/550 file unavailable (transient/permanent), 451 local error,
 * 452/552 out of storage (transient/permanent), 553 file name not allowed.
 *
 * @example
 * ```ts
 * const code: FtpFsErrorCode = 550;
 * console.log(`${code} No such file or directory.`);
 * ```
 */
export type FtpFsErrorCode = 450 | 451 | 452 | 550 | 552 | 553;

/**
 * A file system refusal whose message is safe to send to the client (never contains a host path).
 *
 * @example
 * ```ts
 * declare const fs: FtpFileSystem; // see FtpFileSystem.open
 * declare function reply(text: string): Promise<void>; // sends a control reply
 * try {
 *   await fs.openRead("/missing", 0);
 * } catch (e) {
 *   if (e instanceof FtpFsError) await reply(`${e.code} ${e.message}`);
 * }
 * ```
 */
export class FtpFsError extends Error {
  /** The FTP reply code to answer with. */
  readonly code: FtpFsErrorCode;

  /**
   * Makes a refusal; `message` is sent to the client after the code, so it must never contain a host path.
   *
   * @example
   * ```ts
   * throw new FtpFsError(550, "No such file or directory.");
   * ```
   */
  constructor(code: FtpFsErrorCode, message: string) {
    super(message);
    this.name = "FtpFsError";
    this.code = code;
  }
}

/**
 * One directory entry or stat result, in virtual terms (no host paths).
 *
 * @example
 * ```ts
 * declare const fs: FtpFileSystem; // see FtpFileSystem.open
 * const info: FtpFileInfo = await fs.stat("/a.txt");
 * if (info.type === "file") console.log(`${info.name}: ${info.size} bytes`);
 * ```
 */
export interface FtpFileInfo {
  /** Base name (for the root: "/"). */
  name: string;
  /** "link" only for a symlink whose target is missing; links inside the root report their target's type. */
  type: "file" | "dir" | "link" | "other";
  /** Size in bytes (of the target, for a symlink inside the root). */
  size: number;
  /** Last modification time, or null where the platform does not report one. */
  mtime: Date | null;
  /** Raw st_mode (type and permission bits), or null where the platform has none. */
  mode: number | null;
  /** Hard link count (1 where the platform does not report one). */
  nlink: number;
  /** Owner's numeric user id, or null where the platform has none. */
  uid: number | null;
  /** Owner's numeric group id, or null where the platform has none. */
  gid: number | null;
  /** "<dev hex>g<ino hex>", for the MLSx unique fact. */
  uniqueId: string;
}

/**
 * An upload in progress (from {@link FtpFileSystem.openUpload}); write to `file`, then `commit()` or
 * `abort()` exactly once.
 *
 * @example
 * ```ts
 * declare const fs: FtpFileSystem; // see FtpFileSystem.open
 * declare const chunk: Uint8Array; // bytes received
 * const up: FtpUpload = await fs.openUpload("/in.bin", { mode: "replace", offset: 0 });
 * try {
 *   await up.file.write(chunk);
 *   await up.commit();
 * } catch {
 *   await up.abort();
 * }
 * ```
 */
export interface FtpUpload {
  /**
   * The hidden temp file in the target directory, open for writing and positioned at its end (after any data
   * copied for APPE or REST). Do not close it: `commit()` and `abort()` do.
   */
  file: FtpFile;
  /** The virtual path the upload lands at (for STOU, the unique name it reserved). */
  vpath: string;
  /**
   * Flushes the temp file (`fdatasync`, unless uploads are not synced), closes it and renames it over the
   * target. On failure the temp file is removed and an {@link FtpFsError} is thrown (552 when the disk is
   * full); a second call throws 451.
   */
  commit(): Promise<void>;
  /** Closes and deletes the temp file, leaving the target untouched; does nothing after a commit or abort. */
  abort(): Promise<void>;
  /**
   * With `deferCopy`: copies what REST keeps of the existing file into the temp file, leaving `file` at its end.
   * The FTP session calls it once the data connection is open, so that REST + STOR with no data connection
   * writes nothing. Does nothing the second time or without a REST copy; `commit()` calls it too.
   */
  prepare(): Promise<void>;
}

/** Prefix of upload temp files; entries with it are hidden from listings. */
export const UPLOAD_TEMP_PREFIX = ".outpost-upload-";

/** Names of this process's upload temp files still open (random names, so the name alone identifies one). */
const uploadsInProgress = new Set<string>();

/**
 * True while `name` (a temp file's name) belongs to an upload of this process that is still running: the
 * start-up sweep must leave it alone, whatever its (coarse) file time says.
 *
 * @example
 * ```ts
 * if (!isUploadInProgress(".outpost-upload-0123456789abcdef")) console.log("left by a killed daemon");
 * ```
 */
export function isUploadInProgress(name: string): boolean {
  return uploadsInProgress.has(name);
}

const NOT_FOUND = "No such file or directory.";
const DENIED = "Permission denied.";
const COPY_BUFFER_SIZE = 64 * 1024;
/** Directory entries statted together (and held at once) while listing. */
const LIST_BATCH = 32;

/**
 * Maps any error from a file system call (or from writing an upload's file) to an {@link FtpFsError} whose
 * message is safe for the client; FtpFsErrors pass through unchanged.
 *
 * @example
 * ```ts
 * declare const upload: FtpUpload; // see FtpFileSystem.openUpload
 * declare const chunk: Uint8Array; // bytes received
 * try {
 *   await upload.file.write(chunk);
 * } catch (e) {
 *   const err = toFtpFsError(e); // 552 "Upload aborted: the disk is full." for ENOSPC
 *   console.log(err.code, err.message);
 * }
 * ```
 */
export function toFtpFsError(e: unknown): FtpFsError {
  if (e instanceof FtpFsError) return e;
  if (e instanceof NotRegularFileError) return new FtpFsError(550, "Not a plain file.");
  const code = (e as { code?: string } | null)?.code;
  if (e instanceof Deno.errors.NotFound || code === "ENOENT") return new FtpFsError(550, NOT_FOUND);
  // NotCapable: outside the paths Deno's --allow-read/--allow-write grant the process.
  if (
    e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable || code === "EACCES" ||
    code === "EPERM"
  ) {
    return new FtpFsError(550, DENIED);
  }
  if (e instanceof Deno.errors.AlreadyExists || code === "EEXIST") return new FtpFsError(550, "File exists.");
  if (e instanceof Deno.errors.IsADirectory || code === "EISDIR") {
    return new FtpFsError(550, "Is a directory.");
  }
  if (e instanceof Deno.errors.NotADirectory || code === "ENOTDIR") {
    return new FtpFsError(550, "Not a directory.");
  }
  if (e instanceof Deno.errors.FilesystemLoop || code === "ELOOP") return new FtpFsError(550, DENIED);
  if (code === "ENOSPC" || code === "EDQUOT") return new FtpFsError(552, "Upload aborted: the disk is full.");
  if (code === "ENOTEMPTY") return new FtpFsError(550, "Directory not empty.");
  if (code === "EROFS") return new FtpFsError(550, "Permission denied: the file system is read-only.");
  if (code === "ENAMETOOLONG") return new FtpFsError(553, "File name not allowed: it is too long.");
  if (code === "EINVAL") return new FtpFsError(553, "File name not allowed.");
  if (code === "EXDEV") {
    return new FtpFsError(550, "Rename refused: source and target are on different disks.");
  }
  return new FtpFsError(451, "Local error in processing.");
}

function hasControlChars(s: string): boolean {
  return s.includes("\0") || s.includes("\r") || s.includes("\n");
}

function baseName(vpath: string): string {
  if (vpath === "/") return "/";
  return vpath.slice(vpath.lastIndexOf("/") + 1);
}

function parentOf(vpath: string): string {
  const i = vpath.lastIndexOf("/");
  return i <= 0 ? "/" : vpath.slice(0, i);
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** The working directory the process had before the first pinned operation (null when unreadable). */
let homeCwd: string | null | undefined;

function sameInode(a: { ino: number | null; dev: number }, b: { ino: number | null; dev: number }): boolean {
  return a.ino !== null && a.ino === b.ino && a.dev === b.dev;
}

/** Bytes between two free-space checks while an upload is written. */
const ROOM_CHECK_BYTES = 8 * 1024 * 1024;

/**
 * Throws 452 when the disk holding `dir` has less than `keep` bytes free. Where statfs cannot be asked (no
 * permission, an odd file system) there is no reserve: the write itself still stops at a full disk (552).
 */
async function checkRoom(dir: string, keep: number): Promise<void> {
  if (keep <= 0) return;
  const free = await availableBytes(dir);
  if (free !== null && free < keep) {
    throw new FtpFsError(
      452,
      `Insufficient storage space: the disk keeps ${
        Math.round(keep / 1048576)
      } MiB free for the device itself.`,
    );
  }
}

/** `file` with a free-space check every {@link ROOM_CHECK_BYTES} written (see {@link checkRoom}). */
function roomChecked(file: FtpFile, dir: string, keep: number): FtpFile {
  if (keep <= 0) return file;
  let sinceCheck = 0;
  return {
    read: (p) => file.read(p),
    seek: (o, w) => file.seek(o, w),
    syncData: () => file.syncData(),
    close: () => file.close(),
    async write(p) {
      if (sinceCheck >= ROOM_CHECK_BYTES) {
        sinceCheck = 0;
        await checkRoom(dir, keep);
      }
      const n = await file.write(p);
      sinceCheck += n;
      return n;
    },
  };
}

/** Splits a host path into its directory and final name. */
function splitHost(path: string): { dir: string; name: string } {
  const i = path.lastIndexOf("/");
  return { dir: i <= 0 ? "/" : path.slice(0, i), name: path.slice(i + 1) };
}

function infoFrom(name: string, st: Deno.FileInfo, type?: FtpFileInfo["type"]): FtpFileInfo {
  const t = type ?? (st.isFile ? "file" : st.isDirectory ? "dir" : st.isSymlink ? "link" : "other");
  return {
    name,
    type: t,
    size: st.size,
    mtime: st.mtime,
    mode: st.mode,
    nlink: st.nlink ?? 1,
    uid: st.uid,
    gid: st.gid,
    uniqueId: `${(st.dev ?? 0).toString(16)}g${(st.ino ?? 0).toString(16)}`,
  };
}

/** Where a symlink leads, judged against the root. */
type LinkVerdict = { kind: "inside"; real: string } | { kind: "outside" } | { kind: "dangling" };

/**
 * One user's view of the disk, jailed to a root directory.
 *
 * @example
 * ```ts
 * const fs = await FtpFileSystem.open("/srv/ftp/alice");
 * const vpath = fs.resolve("/docs", "../notes.txt"); // "/notes.txt"
 * const file = await fs.openRead(vpath, 0);
 * file.close();
 * ```
 */
export class FtpFileSystem {
  /** Real path of the root (no trailing slash unless it is "/"). */
  readonly root: string;
  readonly #prefix: string;
  /** Whether a finished upload is flushed to the medium (`fdatasync`) before it is renamed into place. */
  readonly syncUploads: boolean;
  /** Free space uploads leave on their disk (0: no reserve); see `[ftp] min_free`. */
  readonly minFreeBytes: number;

  private constructor(root: string, syncUploads: boolean, minFreeBytes: number) {
    this.root = root;
    this.#prefix = root === "/" ? "/" : root + "/";
    this.syncUploads = syncUploads;
    this.minFreeBytes = minFreeBytes;
  }

  /**
   * Opens a jail at `root` (resolved with realpath). Throws a plain Error (for the operator, so it may name the
   * path) when it is missing or not a directory.
   *
   * @example
   * ```ts
   * const fs = await FtpFileSystem.open("/srv/ftp");
   * console.log(fs.resolve("/", "a.txt")); // "/a.txt"
   * ```
   */
  static async open(
    root: string,
    opts: { syncUploads?: boolean; minFreeBytes?: number } = {},
  ): Promise<FtpFileSystem> {
    let real: string;
    try {
      real = await Deno.realPath(root);
    } catch (e) {
      throw new Error(`FTP root ${root} cannot be used: ${(e as Error).message}`);
    }
    const st = await Deno.stat(real);
    if (!st.isDirectory) throw new Error(`FTP root ${root} cannot be used: it is not a directory.`);
    return new FtpFileSystem(real, opts.syncUploads ?? true, opts.minFreeBytes ?? 0);
  }

  /**
   * Joins `cwd` and a client argument into a normalised virtual absolute path. Pure: it touches no disk.
   * "\" and "%" are ordinary characters; "." and ".." collapse and never climb above "/".
   * Throws FtpFsError 550 when the argument holds NUL, CR or LF.
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * fs.resolve("/a", "../../etc/passwd"); // "/etc/passwd" (inside the jail)
   * ```
   */
  resolve(cwd: string, arg: string): string {
    if (hasControlChars(arg) || hasControlChars(cwd)) {
      throw new FtpFsError(550, "File name not allowed: it contains control characters.");
    }
    const parts: string[] = [];
    const input = arg.startsWith("/") ? arg : `${cwd}/${arg}`;
    for (const seg of input.split("/")) {
      if (seg === "" || seg === ".") continue;
      if (seg === "..") parts.pop();
      else parts.push(seg);
    }
    return "/" + parts.join("/");
  }

  #inside(real: string): boolean {
    return real === this.root || real.startsWith(this.#prefix);
  }

  #join(vpath: string): string {
    if (hasControlChars(vpath)) {
      throw new FtpFsError(550, "File name not allowed: it contains control characters.");
    }
    const v = this.resolve("/", vpath);
    return v === "/" ? this.root : this.#prefix + v.slice(1);
  }

  /** Judges the symlink at host path `linkPath` whose directory's real path is `dirReal`. */
  async #judgeLink(linkPath: string, dirReal: string): Promise<LinkVerdict> {
    try {
      const real = await Deno.realPath(linkPath);
      return this.#inside(real) ? { kind: "inside", real } : { kind: "outside" };
    } catch {
      // Dangling (or a loop): judge the target text lexically, as a write through it would land there.
      try {
        const target = await Deno.readLink(linkPath);
        const abs = target.startsWith("/") ? target : `${dirReal}/${target}`;
        const parts: string[] = [];
        for (const seg of abs.split("/")) {
          if (seg === "" || seg === ".") continue;
          if (seg === "..") parts.pop();
          else parts.push(seg);
        }
        return this.#inside("/" + parts.join("/")) ? { kind: "dangling" } : { kind: "outside" };
      } catch {
        return { kind: "outside" };
      }
    }
  }

  /** Real path of the parent directory of `vpath` plus its base name; the entry itself is not followed. */
  async #entryPath(vpath: string): Promise<{ dirReal: string; name: string; path: string; vpath: string }> {
    const v = this.resolve("/", vpath);
    if (v === "/") throw new FtpFsError(550, DENIED);
    const dirReal = await this.hostPath(parentOf(v));
    const name = baseName(v);
    return { dirReal, name, path: dirReal === "/" ? `/${name}` : `${dirReal}/${name}`, vpath: v };
  }

  /**
   * Runs `fn` with the process's working directory pinned to the host directory `dir` (see the module doc):
   * `fn` must be synchronous and use names relative to it. Refuses with 550 when the directory the kernel moved
   * into is not inside the root (a swap between the check and now); errors become {@link FtpFsError}s.
   */
  #pinned<T>(dir: string, fn: () => T): T {
    if (homeCwd === undefined) {
      try {
        homeCwd = Deno.cwd();
      } catch {
        homeCwd = null; // Not readable under narrowed permissions: stay wherever the last operation was.
      }
    }
    try {
      Deno.chdir(dir);
      if (!this.#inside(Deno.cwd())) throw new FtpFsError(550, DENIED);
      return fn();
    } catch (e) {
      throw toFtpFsError(e);
    } finally {
      if (homeCwd) {
        try {
          Deno.chdir(homeCwd);
        } catch {
          // Gone: the next pinned operation moves away anyway.
        }
      }
    }
  }

  /**
   * Host path of a virtual path, checked with realpath so that no symlink on the way leaves the root.
   * With `mustExist` (the default) the path must exist and the result is its real path. Without it, the parent
   * must exist and the last component may be missing (or a symlink whose target lies inside the root).
   * Refusals are FtpFsError 550 "No such file or directory." / "Permission denied.".
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * const host = await fs.hostPath("/docs/a.txt");
   * console.log(host); // "/srv/ftp/docs/a.txt"
   * ```
   */
  async hostPath(vpath: string, opts: { mustExist?: boolean } = {}): Promise<string> {
    const joined = this.#join(vpath);
    const mustExist = opts.mustExist ?? true;
    let real: string;
    try {
      real = await Deno.realPath(joined);
    } catch (e) {
      if (mustExist) {
        const err = toFtpFsError(e);
        // A dangling symlink anywhere yields ENOENT too; both read as "no such file" to the client.
        throw err.code === 550 ? err : new FtpFsError(550, NOT_FOUND);
      }
      const { dirReal, name, path } = await this.#entryPath(vpath);
      let st: Deno.FileInfo | null = null;
      try {
        st = await Deno.lstat(path);
      } catch (e2) {
        if (!(e2 instanceof Deno.errors.NotFound)) throw toFtpFsError(e2);
      }
      if (st === null) return dirReal === "/" ? `/${name}` : `${dirReal}/${name}`;
      if (st.isSymlink) {
        const verdict = await this.#judgeLink(path, dirReal);
        if (verdict.kind === "inside") return verdict.real;
        throw new FtpFsError(550, DENIED);
      }
      return path;
    }
    if (!this.#inside(real)) throw new FtpFsError(550, DENIED);
    return real;
  }

  /**
   * Stats a virtual path, following symlinks inside the root.
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * const info = await fs.stat("/a.txt"); // { name: "a.txt", type: "file", size: 3, ... }
   * console.log(info.size);
   * ```
   */
  async stat(vpath: string): Promise<FtpFileInfo> {
    const real = await this.hostPath(vpath);
    try {
      return infoFrom(baseName(this.resolve("/", vpath)), await Deno.stat(real));
    } catch (e) {
      throw toFtpFsError(e);
    }
  }

  /**
   * Lists a directory. Symlinks inside the root appear as their targets; symlinks leading outside, upload temp
   * files and names holding CR/LF/NUL (which no client could address) are left out. Holds the whole listing in
   * memory: for transfers use {@link FtpFileSystem.listBatches}.
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * for (const e of await fs.list("/")) console.log(e.name, e.size);
   * ```
   */
  async list(vdir: string): Promise<FtpFileInfo[]> {
    const out: FtpFileInfo[] = [];
    for await (const batch of this.listBatches(vdir)) out.push(...batch);
    return out;
  }

  /**
   * Lists a directory in batches of at most `batchSize` entries, in bounded memory whatever its size:
   * `Deno.readDir` is read lazily and each batch is statted together before it is handed out. Same filtering
   * as {@link FtpFileSystem.list}; a batch may be shorter (entries removed while listing are left out).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * declare function send(line: string): Promise<void>; // writes one listing line
   * for await (const batch of fs.listBatches("/big")) for (const e of batch) await send(e.name);
   * ```
   */
  async *listBatches(vdir: string, batchSize = LIST_BATCH): AsyncGenerator<FtpFileInfo[]> {
    const dirReal = await this.hostPath(vdir);
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(dirReal);
    } catch (e) {
      throw toFtpFsError(e);
    }
    if (!st.isDirectory) throw new FtpFsError(550, "Not a directory.");
    let pending: Deno.DirEntry[] = [];
    const iter = Deno.readDir(dirReal)[Symbol.asyncIterator]();
    try {
      for (;;) {
        let r: IteratorResult<Deno.DirEntry>;
        try {
          r = await iter.next();
        } catch (e) {
          throw toFtpFsError(e);
        }
        if (!r.done) {
          const name = r.value.name;
          if (name.startsWith(UPLOAD_TEMP_PREFIX) || hasControlChars(name)) continue;
          pending.push(r.value);
          if (pending.length < batchSize) continue;
        }
        if (pending.length > 0) {
          const batch = pending;
          pending = [];
          const infos = await Promise.all(batch.map((e) => this.#entryInfo(dirReal, e)));
          yield infos.filter((x): x is FtpFileInfo => x !== null);
        }
        if (r.done) return;
      }
    } finally {
      await iter.return?.();
    }
  }

  /** Info for one directory entry, or null when it is to be left out (a link leading out, or gone). */
  async #entryInfo(dirReal: string, entry: Deno.DirEntry): Promise<FtpFileInfo | null> {
    const name = entry.name;
    const path = dirReal === "/" ? `/${name}` : `${dirReal}/${name}`;
    try {
      if (entry.isSymlink) {
        const verdict = await this.#judgeLink(path, dirReal);
        if (verdict.kind === "outside") return null;
        if (verdict.kind === "dangling") return infoFrom(name, await Deno.lstat(path), "link");
        return infoFrom(name, await Deno.stat(verdict.real));
      }
      return infoFrom(name, await Deno.lstat(path));
    } catch {
      // Removed while listing: leave it out.
      return null;
    }
  }

  /**
   * Opens a file for download, positioned at `offset` (REST). Directories are refused with 550.
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * const file = await fs.openRead("/a.bin", 1024);
   * file.close();
   * ```
   */
  async openRead(vpath: string, offset: number): Promise<FtpFile> {
    return (await this.openDownload(vpath, offset)).file;
  }

  /**
   * Like {@link FtpFileSystem.openRead}, also giving the file's size from the open handle, so RETR needs no
   * separate stat (each async fs call is a thread-pool hop). An offset past the end is
   * not refused here (the caller compares it with `size`).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * const { file, size } = await fs.openDownload("/a.bin", 0);
   * console.log(size);
   * file.close();
   * ```
   */
  async openDownload(vpath: string, offset: number): Promise<{ file: FtpFile; size: number }> {
    const real = await this.hostPath(vpath);
    if (real === this.root) throw new FtpFsError(550, "Not a regular file.");
    const { dir, name } = splitHost(real);
    let file: FtpFile | null = null;
    try {
      // Opened in its pinned directory without blocking (a FIFO would stall the process) and without following
      // a link; the entry must still be the file that was opened (not a link swapped in).
      const { f, st } = this.#pinned(dir, () => {
        const f = FdFile.openRegular(name, "read");
        try {
          const st = f.stat();
          const entry = Deno.lstatSync(name);
          if (entry.isSymlink || !sameInode(st, entry)) throw new FtpFsError(550, DENIED);
          return { f, st };
        } catch (e) {
          f.close();
          throw e;
        }
      });
      file = f;
      if (!st.isFile) throw new FtpFsError(550, "Not a regular file.");
      if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
      return { file, size: st.size };
    } catch (e) {
      try {
        file?.close();
      } catch {
        // Already closed.
      }
      throw toFtpFsError(e);
    }
  }

  /**
   * Starts an upload to `vpath`. `replace` is atomic: data goes to a hidden temp file in the target directory,
   * `commit()` syncs it and renames it over the target, `abort()` deletes it; with `offset > 0` (REST) the first
   * `offset` bytes of the existing file are copied in first (an offset beyond its end is refused with 550).
   * `append` (APPE) appends in place with `O_APPEND`, so concurrent appends all land and no copy is needed; an
   * aborted append keeps what arrived. `unique` (STOU) reserves a free name next to `vpath` first (see
   * {@link FtpUpload.vpath}). Every step acts in the pinned target directory (see the module doc).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * declare const data: Uint8Array; // bytes received
   * const up = await fs.openUpload("/new.bin", { mode: "replace", offset: 0 });
   * try {
   *   await up.file.write(data);
   *   await up.commit();
   * } catch (e) {
   *   await up.abort();
   * }
   * ```
   */
  async openUpload(
    vpath: string,
    opts: { mode: "replace" | "append" | "unique"; offset: number; deferCopy?: boolean },
  ): Promise<FtpUpload> {
    // The reserve (min_free): refused at once when the disk is already that full, and checked again as the
    // upload is written (see roomChecked).
    await checkRoom(this.root, this.minFreeBytes);
    const up = await this.#openUpload(vpath, opts);
    return { ...up, file: roomChecked(up.file, this.root, this.minFreeBytes) };
  }

  async #openUpload(
    vpath: string,
    opts: { mode: "replace" | "append" | "unique"; offset: number; deferCopy?: boolean },
  ): Promise<FtpUpload> {
    let target: string;
    if (opts.mode === "unique") {
      target = await this.hostPath(await this.#reserveUnique(vpath));
    } else {
      target = await this.hostPath(vpath, { mustExist: false });
    }
    if (target === this.root) throw new FtpFsError(550, "Not a plain file.");
    const { dir, name } = splitHost(target);
    if (opts.mode === "append") return this.#openAppend(dir, name);
    const tempName = `${UPLOAD_TEMP_PREFIX}${randomHex(8)}`;
    uploadsInProgress.add(tempName);
    // In the pinned directory: what is there now (never followed), the temp file (O_EXCL), and for REST the
    // original opened and checked to be that entry.
    const opened = (() => {
      try {
        return this.#pinned(dir, () => this.#openTemp(name, tempName, opts));
      } catch (e) {
        uploadsInProgress.delete(tempName);
        throw e;
      }
    })();
    const { file, dirInfo, source, copyBytes } = opened;
    let state: "open" | "done" = "open";
    const removeTemp = (): void => {
      uploadsInProgress.delete(tempName);
      try {
        file.close();
      } catch {
        // Already closed.
      }
      try {
        // The name is random: in whatever directory this lands, it can only be our own temp file.
        this.#pinned(dir, () => Deno.removeSync(tempName));
      } catch {
        // Already gone.
      }
    };
    let pending = source;
    const prepare = async (): Promise<void> => {
      const src = pending;
      if (src === null) return;
      pending = null;
      try {
        await copyPrefix(src, file, copyBytes);
      } catch (e) {
        removeTemp();
        throw toFtpFsError(e);
      } finally {
        src.close();
      }
    };
    const dropSource = () => {
      pending?.close();
      pending = null;
    };
    if (!opts.deferCopy) await prepare();
    return {
      file,
      prepare,
      vpath: opts.mode === "unique" ? this.#virtualOf(target) : this.resolve("/", vpath),
      commit: async () => {
        if (state !== "open") throw new FtpFsError(451, "Upload already finished.");
        await prepare();
        state = "done";
        try {
          if (this.syncUploads) await file.syncData();
          file.close();
          this.#pinned(dir, () => {
            // Still the directory the temp file was made in (not one swapped in under the same path).
            if (!sameInode(Deno.statSync("."), dirInfo)) throw new FtpFsError(550, DENIED);
            Deno.renameSync(tempName, name);
          });
          uploadsInProgress.delete(tempName);
        } catch (e) {
          removeTemp();
          throw toFtpFsError(e);
        }
      },
      abort: () => {
        if (state !== "open") return Promise.resolve();
        state = "done";
        dropSource();
        removeTemp();
        if (opts.mode === "unique") {
          // Drop the reserved (still empty) name again.
          try {
            this.#pinned(dir, () => {
              const st = Deno.lstatSync(name);
              if (st.isFile && st.size === 0) Deno.removeSync(name);
            });
          } catch {
            // Gone or replaced.
          }
        }
        return Promise.resolve();
      },
    };
  }

  /** In the pinned directory of an upload: what is there now, the temp file (O_EXCL), the REST source. */
  #openTemp(name: string, tempName: string, opts: { mode: "append" | "replace" | "unique"; offset: number }) {
    {
      let existing: Deno.FileInfo | null = null;
      try {
        existing = Deno.lstatSync(name);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (existing && !existing.isFile) throw new FtpFsError(550, "Not a plain file.");
      const copyBytes = opts.mode === "replace" ? opts.offset : 0;
      if (copyBytes > (existing?.size ?? 0)) {
        throw new FtpFsError(550, "Restart offset is beyond the end of the file.");
      }
      let source: FdFile | null = null;
      if (copyBytes > 0) {
        source = FdFile.openRegular(name, "read");
        if (!sameInode(source.stat(), existing!)) {
          source.close();
          throw new FtpFsError(550, DENIED);
        }
      }
      const file = Deno.openSync(tempName, {
        write: true,
        createNew: true,
        mode: opts.mode === "unique" ? 0o644 : (existing?.mode ?? 0o644) & 0o777,
      });
      return { file, dirInfo: Deno.statSync("."), source, copyBytes };
    }
  }

  /** The virtual path of a host path inside the root. */
  #virtualOf(host: string): string {
    return host === this.root ? "/" : "/" + host.slice(this.#prefix.length);
  }

  /**
   * APPE: appends in place with `O_APPEND` (concurrent appends all land, and no copy of the file is needed);
   * a missing file is created with `O_EXCL`. An aborted append keeps what arrived, as vsftpd does.
   */
  #openAppend(dir: string, name: string): FtpUpload {
    const file = this.#pinned(dir, () => {
      for (let i = 0; i < 3; i++) {
        let f: FdFile;
        try {
          // Without blocking: a FIFO with no reader fails (ENXIO), one with a reader is refused after the open.
          f = FdFile.openRegular(name, "append");
        } catch (e) {
          if ((e as { code?: string }).code !== "ENOENT" && !(e instanceof Deno.errors.NotFound)) throw e;
          try {
            return FdFile.openRegular(name, "append", { create: true });
          } catch (e2) {
            const code = (e2 as { code?: string }).code;
            if (code === "EEXIST" || e2 instanceof Deno.errors.AlreadyExists) continue; // created meanwhile
            throw e2;
          }
        }
        const st = f.stat();
        const entry = Deno.lstatSync(name);
        if (entry.isSymlink || !sameInode(st, entry)) {
          f.close();
          throw new FtpFsError(550, DENIED);
        }
        return f;
      }
      throw new FtpFsError(450, "The file is busy; try again.");
    });
    let state: "open" | "done" = "open";
    const finish = async (sync: boolean): Promise<void> => {
      if (state !== "open") return;
      state = "done";
      try {
        if (sync && this.syncUploads) await file.syncData();
      } finally {
        try {
          file.close();
        } catch {
          // Already closed.
        }
      }
    };
    const vpath = this.#virtualOf(dir === "/" ? `/${name}` : `${dir}/${name}`);
    return {
      file,
      vpath,
      commit: async () => {
        if (state !== "open") throw new FtpFsError(451, "Upload already finished.");
        try {
          await finish(true);
        } catch (e) {
          throw toFtpFsError(e);
        }
      },
      abort: () => finish(false).catch(() => {}),
      prepare: () => Promise.resolve(), // APPE writes in place: nothing to copy
    };
  }

  /**
   * STOU: reserves a free name next to `vpath` (the name itself, then "name.1", "name.2", ...) by creating it
   * empty with `O_EXCL`, so two concurrent STOUs never get the same one; the upload then replaces it.
   */
  async #reserveUnique(vpath: string): Promise<string> {
    const v = this.resolve("/", vpath);
    const vdir = parentOf(v);
    const dirReal = await this.hostPath(vdir);
    let base = v === "/" ? "" : baseName(v);
    if (base === "" || base.startsWith(UPLOAD_TEMP_PREFIX)) base = "file";
    const name = this.#pinned(dirReal, () => {
      const candidates = [base, ...Array.from({ length: 99 }, (_, i) => `${base}.${i + 1}`)];
      for (let i = 0; i < 10; i++) candidates.push(`${base}.${randomHex(6)}`);
      for (const c of candidates) {
        try {
          Deno.openSync(c, { write: true, createNew: true, mode: 0o644 }).close();
          return c;
        } catch (e) {
          if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        }
      }
      throw new FtpFsError(553, "No unique file name is free.");
    });
    return vdir === "/" ? `/${name}` : `${vdir}/${name}`;
  }

  /**
   * Finds a free virtual path in `vdir` for STOU: the hint itself if free, else "hint.1", "hint.2", ...
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * const vpath = await fs.uniqueName("/incoming", "report.txt"); // "/incoming/report.txt.1" if taken
   * console.log(vpath);
   * ```
   */
  async uniqueName(vdir: string, hint?: string): Promise<string> {
    const dir = this.resolve("/", vdir);
    await this.hostPath(dir);
    let base = hint ? baseName(this.resolve("/", hint)) : "";
    if (base === "/" || base === "" || base.startsWith(UPLOAD_TEMP_PREFIX)) base = "file";
    const prefix = dir === "/" ? "/" : dir + "/";
    for (let i = 0; i < 100; i++) {
      const candidate = prefix + (i === 0 ? base : `${base}.${i}`);
      if (!(await this.#entryExists(candidate))) return candidate;
    }
    for (let i = 0; i < 10; i++) {
      const candidate = `${prefix}${base}.${randomHex(6)}`;
      if (!(await this.#entryExists(candidate))) return candidate;
    }
    throw new FtpFsError(553, "No unique file name is free.");
  }

  async #entryExists(vpath: string): Promise<boolean> {
    const { path } = await this.#entryPath(vpath);
    try {
      await Deno.lstat(path);
      return true;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw toFtpFsError(e);
    }
  }

  /** Entry path of `vpath` for operations on the entry itself (unlink, rename), refusing links leading out. */
  async #ownEntry(vpath: string, mustExist: boolean): Promise<{ path: string; st: Deno.FileInfo | null }> {
    const { dirReal, path } = await this.#entryPath(vpath);
    let st: Deno.FileInfo | null = null;
    try {
      st = await Deno.lstat(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || mustExist) throw toFtpFsError(e);
    }
    if (st?.isSymlink && (await this.#judgeLink(path, dirReal)).kind === "outside") {
      throw new FtpFsError(550, DENIED);
    }
    return { path, st };
  }

  /**
   * Creates one directory (the parent must exist).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * await fs.mkdir("/new");
   * ```
   */
  async mkdir(vpath: string): Promise<void> {
    const { path, st } = await this.#ownEntry(vpath, false);
    if (st) throw new FtpFsError(550, "File exists.");
    const { dir, name } = splitHost(path);
    this.#pinned(dir, () => Deno.mkdirSync(name));
  }

  /**
   * Removes an empty directory (never the root, never through a symlink).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * await fs.rmdir("/old");
   * ```
   */
  async rmdir(vpath: string): Promise<void> {
    const { path, st } = await this.#ownEntry(vpath, true);
    if (!st?.isDirectory) throw new FtpFsError(550, "Not a directory.");
    const { dir, name } = splitHost(path);
    this.#pinned(dir, () => {
      if (!Deno.lstatSync(name).isDirectory) throw new FtpFsError(550, "Not a directory.");
      Deno.removeSync(name);
    });
  }

  /**
   * Removes a file (or a symlink itself). Directories are refused with 550.
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * await fs.remove("/a.txt");
   * ```
   */
  async remove(vpath: string): Promise<void> {
    const { path, st } = await this.#ownEntry(vpath, true);
    if (st?.isDirectory) throw new FtpFsError(550, "Not a plain file: DELE removes files only.");
    const { dir, name } = splitHost(path);
    this.#pinned(dir, () => {
      // unlink never follows the final component; a directory swapped in since the check is refused.
      if (Deno.lstatSync(name).isDirectory) {
        throw new FtpFsError(550, "Not a plain file: DELE removes files only.");
      }
      Deno.removeSync(name);
    });
  }

  /**
   * Renames a file or directory (a symlink is renamed itself, not its target).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * await fs.rename("/a.txt", "/b.txt");
   * ```
   */
  async rename(from: string, to: string): Promise<void> {
    const src = await this.#ownEntry(from, true);
    const dst = await this.#ownEntry(to, false);
    if (src.path === dst.path) return;
    if (src.st?.isDirectory && dst.st && !dst.st.isDirectory) throw new FtpFsError(550, "Not a directory.");
    if (!src.st?.isDirectory && dst.st?.isDirectory) throw new FtpFsError(550, "Is a directory.");
    const a = splitHost(src.path);
    const b = splitHost(dst.path);
    if (a.dir === b.dir) {
      // One directory: both names relative to it, pinned.
      this.#pinned(a.dir, () => {
        if (!sameInode(Deno.lstatSync(a.name), src.st!)) throw new FtpFsError(550, DENIED);
        Deno.renameSync(a.name, b.name);
      });
      return;
    }
    // Two directories: the destination is pinned (the entry lands inside whatever the paths do); the source is
    // named by its checked real path, and the moved entry must be the one that was checked.
    this.#pinned(b.dir, () => {
      Deno.renameSync(a.dir === "/" ? `/${a.name}` : `${a.dir}/${a.name}`, b.name);
      const moved = Deno.lstatSync(b.name);
      if (!sameInode(moved, src.st!)) {
        Deno.renameSync(b.name, `${a.dir === "/" ? "" : a.dir}/${a.name}`);
        throw new FtpFsError(550, DENIED);
      }
    });
  }

  /**
   * Changes permission bits (only 0o777: no setuid, setgid or sticky bits from clients).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * await fs.chmod("/script.sh", 0o755);
   * ```
   */
  async chmod(vpath: string, mode: number): Promise<void> {
    const real = await this.hostPath(vpath);
    if (real === this.root) throw new FtpFsError(550, DENIED);
    const { dir, name } = splitHost(real);
    // Opened without following (O_NOFOLLOW) in the pinned directory, then changed through the descriptor.
    this.#pinned(dir, () => {
      // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, with the process stopped.
      const c = nodeFs.constants;
      const fd = nodeFs.openSync(name, c.O_RDONLY | c.O_NOFOLLOW | c.O_NONBLOCK);
      try {
        nodeFs.fchmodSync(fd, mode & 0o777);
      } finally {
        nodeFs.closeSync(fd);
      }
    });
  }

  /**
   * True when the virtual path exists inside the jail (a symlink leading out counts as missing).
   *
   * @example
   * ```ts
   * declare const fs: FtpFileSystem; // see FtpFileSystem.open
   * if (await fs.exists("/a.txt")) console.log("there");
   * ```
   */
  async exists(vpath: string): Promise<boolean> {
    try {
      await this.hostPath(vpath);
      return true;
    } catch (e) {
      if (e instanceof FtpFsError && e.code === 550) return false;
      throw e;
    }
  }
}

/** Copies the first `count` bytes of `input` into `dst` with one reused 64 KiB buffer. */
async function copyPrefix(input: FtpFile, dst: FtpFile, count: number): Promise<void> {
  {
    const buf = new Uint8Array(COPY_BUFFER_SIZE);
    let left = count;
    while (left > 0) {
      const n = await input.read(left < buf.length ? buf.subarray(0, left) : buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await dst.write(buf.subarray(off, n));
      left -= n;
    }
  }
}
