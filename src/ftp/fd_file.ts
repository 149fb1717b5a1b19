/**
 * Files the FTP server opens on behalf of a client, opened so that the open itself can never block the process.
 *
 * `Deno.open` cannot pass `O_NONBLOCK`: opening a named pipe (FIFO) that a local process put into a user's root
 * blocks until the other end is opened, and the FTP server opens files synchronously in a pinned directory (see
 * `ftp_file_system.ts`), so one `RETR pipe` froze every session, listener and timer. {@link FdFile} opens through
 * `node:fs` with `O_NONBLOCK | O_NOFOLLOW` (a FIFO opens at once or fails with ENXIO, a symlink fails with ELOOP),
 * checks the open descriptor is a regular file, and then reads and writes it with positioned, asynchronous calls.
 * On a regular file `O_NONBLOCK` changes nothing.
 *
 * @module
 */

import * as nodeFs from "node:fs";

const C = nodeFs.constants;

/** What the FTP server needs of an open file: Deno.FsFile and {@link FdFile} both have it. */
export interface FtpFile {
  /** Reads into `p`; null at the end of the file. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`; resolves to the bytes written. */
  write(p: Uint8Array): Promise<number>;
  /** Moves to `offset` from the start. */
  seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  /** Flushes the data to the medium (`fdatasync`). */
  syncData(): Promise<void>;
  /** Closes the file. */
  close(): void;
}

/** What {@link FdFile.stat} tells: enough to compare the opened file with a directory entry. */
export interface FdStat {
  isFile: boolean;
  ino: number;
  dev: number;
  size: number;
  mode: number;
}

/**
 * A file opened with flags `Deno.open` cannot pass; positioned reads and writes through `node:fs` (each one a
 * thread-pool call, as with Deno.FsFile).
 *
 * @example
 * ```ts
 * const f = FdFile.openRegular("notes.txt", "read"); // throws for a FIFO, a device, a symlink or a folder
 * const buf = new Uint8Array(65536);
 * const n = await f.read(buf);
 * console.log(n);
 * f.close();
 * ```
 */
export class FdFile implements FtpFile {
  readonly #fd: number;
  readonly #append: boolean;
  #pos = 0;
  #closed = false;

  private constructor(fd: number, append: boolean) {
    this.#fd = fd;
    this.#append = append;
  }

  /**
   * Opens `name` (relative to the current directory, as the pinned operations want) without blocking and without
   * following a final symlink, and refuses anything but a regular file with {@link NotRegularFileError}.
   * `"append"` creates the file (0644) when `create` is set and it does not exist.
   */
  static openRegular(name: string, how: "read" | "append", opts: { create?: boolean } = {}): FdFile {
    const flags = (how === "read" ? C.O_RDONLY : C.O_WRONLY | C.O_APPEND) | C.O_NONBLOCK | C.O_NOFOLLOW |
      (opts.create ? C.O_CREAT | C.O_EXCL : 0);
    let fd: number;
    try {
      fd = nodeFs.openSync(name, flags, 0o644);
    } catch (e) {
      const code = (e as { code?: string }).code;
      // ENXIO: a FIFO with nobody at the other end (write side); ELOOP: the name is a symlink.
      if (code === "ENXIO" || code === "ELOOP") throw new NotRegularFileError(name, code);
      throw e;
    }
    const f = new FdFile(fd, how === "append");
    if (!f.stat().isFile) {
      f.close();
      throw new NotRegularFileError(name, "not a regular file");
    }
    return f;
  }

  /** The open file's metadata (fstat). */
  stat(): FdStat {
    const s = nodeFs.fstatSync(this.#fd);
    return {
      isFile: s.isFile(),
      ino: Number(s.ino),
      dev: Number(s.dev),
      size: Number(s.size),
      mode: Number(s.mode),
    };
  }

  /** Reads from the current position; null at the end of the file. */
  read(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      nodeFs.read(this.#fd, p, 0, p.length, this.#pos, (err, n) => {
        if (err) return reject(err);
        this.#pos += n;
        resolve(n === 0 ? null : n);
      });
    });
  }

  /** Writes at the current position (at the end, for a file opened to append). */
  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      const done = (err: NodeJS.ErrnoException | null, n: number) => {
        if (err) return reject(err);
        this.#pos += n;
        resolve(n);
      };
      if (this.#append) nodeFs.write(this.#fd, p, 0, p.length, null, done);
      else nodeFs.write(this.#fd, p, 0, p.length, this.#pos, done);
    });
  }

  /** Moves to `offset` bytes from the start (the only origin the FTP server uses). */
  seek(offset: number, whence: Deno.SeekMode): Promise<number> {
    if (whence !== Deno.SeekMode.Start) return Promise.reject(new Error("FdFile seeks from the start only."));
    this.#pos = offset;
    return Promise.resolve(offset);
  }

  /** `fdatasync`. */
  syncData(): Promise<void> {
    return new Promise((resolve, reject) =>
      nodeFs.fdatasync(this.#fd, (err) => err ? reject(err) : resolve())
    );
  }

  /** Closes the descriptor (once). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    nodeFs.closeSync(this.#fd);
  }
}

/**
 * The name is a FIFO, a device, a socket, a symlink or a folder: the FTP server serves and changes regular files
 * only.
 *
 * @example
 * ```ts
 * try {
 *   FdFile.openRegular("pipe", "read");
 * } catch (e) {
 *   if (e instanceof NotRegularFileError) console.log("550 Not a plain file.");
 * }
 * ```
 */
export class NotRegularFileError extends Error {
  constructor(name: string, why: string) {
    super(`Refusing ${name}: ${why}.`);
    this.name = "NotRegularFileError";
  }
}
