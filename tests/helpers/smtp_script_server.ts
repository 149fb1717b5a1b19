/**
 * A scripted SMTP server for fault injection (Deno.listen on 127.0.0.1, port 0). It speaks enough SMTP for the
 * client, records every command line and every complete message, and lets a test override each reply: refuse a
 * recipient, answer 421/451/552, stall, drop the connection in the middle of DATA, or leave out STARTTLS.
 *
 * @module
 */

import { LineReader } from "../../src/net/line_reader.ts";

/** Per-connection hooks; `n` counts connections from 1. Return a reply line, or null to drop the connection. */
export interface ScriptHooks {
  greeting?: (n: number) => string;
  /** EHLO keywords (default PIPELINING, SIZE 10485760, 8BITMIME, SMTPUTF8). */
  extensions?: (n: number) => string[];
  mail?: (line: string, n: number) => string | null;
  rcpt?: (addr: string, n: number) => string | null;
  /** Reply to the DATA command itself. */
  data?: (n: number) => string | null;
  /** Called after each body line (unstuffed), before the final "."; return "drop" to cut the connection. */
  bodyLine?: (line: string, n: number) => "drop" | void | Promise<"drop" | void>;
  /** Reply after the final "."; may wait (a stalled server); null drops the connection. */
  afterData?: (msg: string, n: number) => Promise<string | null> | string | null;
  /** Milliseconds to wait before every reply (slow server). */
  delayMs?: (n: number) => number;
}

/**
 * A running scripted server.
 *
 * @example
 * ```ts
 * const srv = startScriptServer({ rcpt: (a) => a.startsWith("bad") ? "550 5.1.1 no" : "250 ok" });
 * // ... deliver to 127.0.0.1:srv.port ...
 * await srv.close();
 * ```
 */
export interface ScriptServer {
  port: number;
  /** Every command line received, per connection: `lines[n-1]`. */
  lines: string[][];
  /** Complete messages (terminated by "."), unstuffed, CRLF-joined. */
  messages: string[];
  /** Raw bytes received during DATA bodies (for the bare-LF check). */
  rawData: Uint8Array[];
  connections: number;
  close(): Promise<void>;
}

const enc = new TextEncoder();

/**
 * Starts the server; with `tls` it listens with implicit TLS using that certificate.
 *
 * @example
 * ```ts
 * import { makeTestCerts } from "./smtp_sink.ts";
 *
 * const certs = await makeTestCerts(await Deno.makeTempDir());
 * const cert = await Deno.readTextFile(certs.certFile);
 * const key = await Deno.readTextFile(certs.keyFile);
 * const srv = startScriptServer({}, { cert, key });
 * console.log(srv.port);
 * ```
 */
export function startScriptServer(
  hooks: ScriptHooks = {},
  tls?: { cert: string; key: string },
): ScriptServer {
  const listener = tls
    ? Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: tls.cert, key: tls.key })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const srv: ScriptServer = {
    port: (listener.addr as Deno.NetAddr).port,
    lines: [],
    messages: [],
    rawData: [],
    connections: 0,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await Promise.allSettled([...tasks]);
      await acceptLoop;
    },
  };
  const session = async (conn: Deno.Conn, n: number) => {
    const lines: string[] = [];
    srv.lines.push(lines);
    // Tee raw bytes during DATA.
    let capture: Uint8Array[] | null = null;
    let captured = 0;
    const src = {
      read: async (b: Uint8Array) => {
        const r = await conn.read(b);
        if (r !== null && capture && captured < 1 << 20) {
          capture.push(b.slice(0, r));
          captured += r;
        }
        return r;
      },
    };
    const reader = new LineReader(src, { maxLineLength: 20000 });
    const reply = async (s: string | null): Promise<boolean> => {
      if (s === null) return false;
      const d = hooks.delayMs?.(n) ?? 0;
      if (d > 0) await new Promise((r) => setTimeout(r, d));
      await conn.write(enc.encode(s + "\r\n"));
      return true;
    };
    if (!await reply(hooks.greeting?.(n) ?? "220 script.test ESMTP ready")) return;
    for (;;) {
      const line = await reader.readLine();
      if (line === null) return;
      lines.push(line);
      const verb = line.split(" ")[0].toUpperCase();
      let ok = true;
      if (verb === "EHLO") {
        const ext = hooks.extensions?.(n) ?? ["PIPELINING", "SIZE 10485760", "8BITMIME", "SMTPUTF8"];
        const all = ["script.test greets you", ...ext];
        ok = await reply(all.map((l, i) => `250${i === all.length - 1 ? " " : "-"}${l}`).join("\r\n"));
      } else if (verb === "HELO") ok = await reply("250 script.test");
      else if (verb === "MAIL") ok = await reply(hooks.mail?.(line, n) ?? "250 2.1.0 ok");
      else if (verb === "RCPT") {
        const addr = /<([^>]*)>/.exec(line)?.[1] ?? "";
        ok = await reply(hooks.rcpt?.(addr, n) ?? "250 2.1.5 ok");
      } else if (verb === "DATA") {
        const r = hooks.data?.(n) ?? "354 go ahead";
        ok = await reply(r);
        if (ok && r.startsWith("354")) {
          capture = [];
          captured = 0;
          const body: string[] = [];
          let complete = false;
          for (;;) {
            const l = await reader.readLine();
            if (l === null) break;
            if (l === ".") {
              complete = true;
              break;
            }
            const u = l.startsWith(".") ? l.slice(1) : l;
            body.push(u);
            if ((await hooks.bodyLine?.(u, n)) === "drop") break;
          }
          const all = new Uint8Array(captured);
          capture.reduce((o, c) => (all.set(c, o), o + c.length), 0);
          srv.rawData.push(all);
          capture = null;
          if (!complete) return;
          const msg = body.join("\r\n") + "\r\n";
          const after = await (hooks.afterData?.(msg, n) ?? "250 2.0.0 queued");
          if (after !== null && after.startsWith("250")) srv.messages.push(msg);
          ok = await reply(after);
        }
      } else if (verb === "QUIT") {
        await reply("221 2.0.0 bye");
        return;
      } else if (verb === "RSET" || verb === "NOOP") ok = await reply("250 ok");
      else if (verb === "STARTTLS") ok = await reply("454 4.7.0 TLS not available");
      else if (verb === "AUTH") ok = await reply("535 5.7.8 no");
      else ok = await reply("502 5.5.2 unknown command");
      if (!ok) return;
    }
  };
  const acceptLoop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      const n = ++srv.connections;
      conns.add(conn);
      const t = session(conn, n).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // closed by close()
        }
        tasks.delete(t);
      });
      tasks.add(t);
    }
  })();
  return srv;
}
