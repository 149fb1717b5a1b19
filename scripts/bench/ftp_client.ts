/**
 * A minimal FTP client for the benchmark's own sessions (idle sessions, the 10,000-session leak check): log in,
 * EPSV, LIST, RETR into one reused buffer, QUIT. Replies are read with the project's `LineReader`.
 *
 * @module
 */

import { LineReader } from "../../src/net/line_reader.ts";
import { writeAll } from "../../src/net/byte_conn.ts";

const encoder = new TextEncoder();

/** One reply: its code and its last line. */
export interface FtpReply {
  code: number;
  text: string;
}

/**
 * One control connection.
 *
 * @example
 * ```ts
 * const ftp = await BenchFtpClient.login(2121, "bench", "pw");
 * const bytes = await ftp.retr("tiny.txt", new Uint8Array(65536));
 * console.log(bytes, "bytes");
 * await ftp.quit();
 * ```
 */
export class BenchFtpClient {
  readonly #conn: Deno.TcpConn;
  readonly #lines: LineReader;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#lines = new LineReader(conn, { maxLineLength: 8192 });
  }

  /** Connects to 127.0.0.1:`port` and logs in; throws with the server's reply when that fails. */
  static async login(port: number, user: string, password: string): Promise<BenchFtpClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const c = new BenchFtpClient(conn);
    try {
      const hello = await c.reply();
      if (hello.code !== 220) throw new Error(`FTP greeting refused: ${hello.code} ${hello.text}`);
      let r = await c.command(`USER ${user}`);
      if (r.code === 331) r = await c.command(`PASS ${password}`);
      if (r.code !== 230) throw new Error(`FTP login refused: ${r.code} ${r.text}`);
      return c;
    } catch (e) {
      c.close();
      throw e;
    }
  }

  /** Reads one (possibly multi-line) reply. */
  async reply(): Promise<FtpReply> {
    for (let i = 0; i < 1000; i++) {
      const line = await this.#lines.readLine();
      if (line === null) throw new Error("FTP server closed the control connection.");
      const m = /^(\d{3})( |$)(.*)/.exec(line);
      if (m) return { code: Number(m[1]), text: m[3] };
    }
    throw new Error("FTP reply longer than 1000 lines.");
  }

  /** Sends one command and reads its reply. */
  async command(line: string): Promise<FtpReply> {
    await writeAll(this.#conn, encoder.encode(line + "\r\n"));
    return await this.reply();
  }

  async #dataConn(): Promise<Deno.TcpConn> {
    const r = await this.command("EPSV");
    const m = /\(\|\|\|(\d+)\|\)/.exec(r.text);
    if (r.code !== 229 || !m) throw new Error(`FTP EPSV refused: ${r.code} ${r.text}`);
    return await Deno.connect({ hostname: "127.0.0.1", port: Number(m[1]) });
  }

  async #transfer(command: string, buf: Uint8Array): Promise<number> {
    const data = await this.#dataConn();
    let total = 0;
    try {
      const start = await this.command(command);
      if (start.code !== 150 && start.code !== 125) throw new Error(`FTP ${command} refused: ${start.code}`);
      for (;;) {
        const n = await data.read(buf);
        if (n === null) break;
        total += n;
      }
    } finally {
      data.close();
    }
    const done = await this.reply();
    if (done.code !== 226) throw new Error(`FTP ${command} failed: ${done.code} ${done.text}`);
    return total;
  }

  /** LIST of the current folder; returns the listing's size in bytes. */
  list(buf: Uint8Array): Promise<number> {
    return this.#transfer("LIST", buf);
  }

  /** Downloads `path` into `buf` (overwritten chunk by chunk); returns the byte count. */
  async retr(path: string, buf: Uint8Array): Promise<number> {
    const t = await this.command("TYPE I");
    if (t.code !== 200) throw new Error(`FTP TYPE I refused: ${t.code} ${t.text}`);
    return await this.#transfer(`RETR ${path}`, buf);
  }

  /** QUIT and close. */
  async quit(): Promise<void> {
    try {
      await this.command("QUIT");
    } finally {
      this.close();
    }
  }

  /** Closes the control connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}
