/**
 * The SMTP client against hostile servers that speak raw bytes: a garbage greeting, overlong reply lines, a
 * never-ending multi-line reply, mixed codes in one reply, non-ASCII bytes, replies sent before the command, the
 * connection closed at each stage, and a server that drips one byte per 100 ms. Each must end in an SmtpError
 * naming the stage (never a hang or a crash), and a message in the outbox must stay queued.
 */
import assert from "node:assert/strict";
import { deliver, SmtpError } from "../src/smtp/smtp_client.ts";
import { Outbox } from "../src/smtp/outbox.ts";
import { DeliveryWorker } from "../src/smtp/delivery_worker.ts";
import { setLogSink } from "../src/log/logger.ts";
import { LineReader } from "../src/net/line_reader.ts";
import { bytesSource, clientOptions } from "./helpers/smtp_test_util.ts";

setLogSink(() => {});
const enc = new TextEncoder();
const env = { from: "board@example.com", to: ["me@example.com"] };
const simple = () => bytesSource(enc.encode("Subject: t\r\n\r\nhello\r\n"));

/** What a raw server does on one connection: write bytes, read lines, close. */
type RawScript = (io: {
  send(s: string | Uint8Array): Promise<void>;
  line(): Promise<string | null>;
  stopped(): boolean;
}) => Promise<void>;

/** A one-script raw TCP server on 127.0.0.1 port 0; every loop in a script must check `stopped()`. */
function rawServer(script: RawScript): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let stopped = false;
  const loop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      conns.add(conn);
      const reader = new LineReader(conn, { maxLineLength: 1 << 16 });
      const t = script({
        send: async (s) => {
          let b = typeof s === "string" ? enc.encode(s) : s;
          while (b.length > 0) b = b.subarray(await conn.write(b));
        },
        line: () => reader.readLine(),
        stopped: () => stopped,
      }).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // Already closed.
        }
        tasks.delete(t);
      });
      tasks.add(t);
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      stopped = true;
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
      await Promise.allSettled([...tasks]);
      await loop;
    },
  };
}

const EHLO_OK = "250-hostile.test\r\n250-PIPELINING\r\n250 SIZE 100000\r\n";

/** Answers like a normal server until `stage` (the verb after which it misbehaves with `then`). */
function until(stage: string, then: (io: Parameters<RawScript>[0]) => Promise<void>): RawScript {
  return async (io) => {
    if (stage === "greeting") return await then(io);
    await io.send("220 hostile.test ESMTP\r\n");
    for (let i = 0; i < 50; i++) {
      const l = await io.line();
      if (l === null) return;
      const verb = l.split(" ")[0].toUpperCase();
      if (verb === stage) return await then(io);
      if (verb === "EHLO") await io.send(EHLO_OK);
      else if (verb === "DATA") await io.send("354 go\r\n");
      else if (verb === "QUIT") return await io.send("221 bye\r\n");
      else await io.send("250 ok\r\n");
      if (verb === "DATA") {
        for (let k = 0; k < 1000; k++) {
          const b = await io.line();
          if (b === null) return;
          if (b === ".") {
            if (stage === ".") return await then(io);
            await io.send("250 queued\r\n");
            break;
          }
        }
      }
    }
  };
}

const close = async () => {};

interface Case {
  name: string;
  script: RawScript;
  /** The stage the error must name. */
  stage: string;
  message?: RegExp;
}

const CASES: Case[] = [
  {
    name: "garbage greeting",
    script: until("greeting", (io) => io.send("hello there\r\n")),
    stage: "greeting",
  },
  {
    name: "greeting line far over the limit",
    script: until("greeting", (io) => io.send("220 " + "x".repeat(100_000) + "\r\n")),
    stage: "greeting",
  },
  {
    name: "greeting with non-ASCII bytes, then closed at EHLO",
    script: async (io) => {
      await io.send(new Uint8Array([0x32, 0x32, 0x30, 0x20, 0xff, 0xfe, 0xc3, 0x28, 0x0d, 0x0a]));
      await io.line();
    },
    stage: "EHLO",
  },
  {
    name: "never-ending multi-line EHLO reply",
    script: until("EHLO", async (io) => {
      for (let i = 0; i < 100_000 && !io.stopped(); i++) await io.send("250-more\r\n");
    }),
    stage: "EHLO",
    message: /more than \d+ lines/,
  },
  {
    name: "mixed codes in one multi-line reply",
    script: until("EHLO", (io) => io.send("250-a\r\n251-b\r\n250 c\r\n")),
    stage: "EHLO",
    message: /mixed reply codes/,
  },
  {
    name: "malformed reply code",
    script: until("MAIL", (io) => io.send("2x0 ok\r\n")),
    stage: "MAIL",
  },
  {
    name: "drip-fed greeting, one byte per 100 ms",
    script: until("greeting", async (io) => {
      const s = "220 " + "s".repeat(200) + "\r\n";
      for (let i = 0; i < s.length && !io.stopped(); i++) {
        await io.send(s[i]);
        await new Promise((r) => setTimeout(r, 100));
      }
    }),
    stage: "greeting",
    message: /within 500 ms/,
  },
  ...["greeting", "EHLO", "MAIL", "RCPT", "DATA", "."].map((stage): Case => ({
    name: `connection closed at ${stage}`,
    script: until(stage, close),
    stage: stage === "." ? "DATA" : stage,
  })),
];

Deno.test("smtp hostile server: every misbehaviour ends in an SmtpError naming the stage", async () => {
  for (const c of CASES) {
    const srv = rawServer(c.script);
    try {
      await assert.rejects(
        deliver(clientOptions(srv.port, { replyTimeoutMs: 500, dataTimeoutMs: 1000 }), env, simple()),
        (e: unknown) => {
          assert.ok(e instanceof SmtpError, `${c.name}: not an SmtpError: ${e}`);
          assert.equal(e.stage, c.stage, `${c.name}: stage ${e.stage}: ${e.message}`);
          if (c.message) assert.match(e.message, c.message, c.name);
          assert.ok(e.message.length < 400, `${c.name}: error message is ${e.message.length} characters`);
          return true;
        },
        c.name,
      );
    } finally {
      await srv.close();
    }
  }
});

Deno.test("smtp hostile server: replies sent before the commands do not hang or crash the client", async () => {
  const srv = rawServer(async (io) => {
    await io.send("220 a\r\n250 b\r\n250 c\r\n250 d\r\n354 e\r\n250 f\r\n221 g\r\n");
    for (let i = 0; i < 1000 && (await io.line()) !== null; i++);
  });
  try {
    const settled = await deliver(clientOptions(srv.port, { replyTimeoutMs: 500 }), env, simple()).then(
      () => "delivered",
      (e: unknown) => {
        assert.ok(e instanceof SmtpError, `not an SmtpError: ${e}`);
        return e.stage;
      },
    );
    assert.ok(typeof settled === "string");
  } finally {
    await srv.close();
  }
});

Deno.test("smtp hostile server: the outbox keeps the message through every failure", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost_smtp_hostile_" });
  try {
    const outbox = await Outbox.open({
      dir,
      maxAgeMs: 86_400_000,
      maxBytes: 1 << 24,
      maxMessageBytes: 1 << 20,
      retryMinMs: 1,
      retryMaxMs: 2,
      defaults: { from: "board@example.com", domain: "test-board" },
    });
    const id = await outbox.enqueue({ to: ["me@example.com"], subject: "kept", text: "hi" });
    // Temporary failures only (no 5xx reply): the message must stay queued after each attempt.
    for (const c of CASES) {
      const srv = rawServer(c.script);
      try {
        await outbox.retry();
        const worker = new DeliveryWorker(
          outbox,
          clientOptions(srv.port, { replyTimeoutMs: 500, dataTimeoutMs: 1000 }),
        );
        await worker.runOnce();
        const queued = (await outbox.list("queued")).map((e) => e.id);
        assert.deepEqual(queued, [id], `${c.name}: queue is ${JSON.stringify(queued)}`);
      } finally {
        await srv.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hostile server: stops reading the body after 354: the DATA timeout names itself", async () => {
  const net = await import("node:net");
  const sockets: import("node:net").Socket[] = [];
  const srv = net.createServer((s) => {
    sockets.push(s);
    s.on("error", () => {});
    s.write("220 stall.test ESMTP\r\n");
    let pending = "";
    const onData = (d: Uint8Array) => {
      pending += new TextDecoder("latin1").decode(d);
      for (let nl = pending.indexOf("\r\n"); nl >= 0; nl = pending.indexOf("\r\n")) {
        const verb = pending.slice(0, 4).toUpperCase();
        pending = pending.slice(nl + 2);
        if (verb === "DATA") {
          s.off("data", onData);
          s.pause(); // never read the body: the client's writes block
          s.write("354 go ahead\r\n");
          return;
        }
        s.write(verb === "QUIT" ? "221 bye\r\n" : "250 ok\r\n");
      }
    };
    s.on("data", onData);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  try {
    const line = "x".repeat(998) + "\r\n";
    const body = new TextEncoder().encode(`Subject: big\r\n\r\n${line.repeat(32 * 1024)}`);
    const err = await deliver(
      clientOptions(port, { dataTimeoutMs: 300 }),
      { from: "a@example.com", to: ["b@example.com"] },
      bytesSource(body),
    ).then(() => null, (e) => e);
    assert.ok(err instanceof SmtpError, String(err));
    assert.equal(err.stage, "DATA");
    assert.match(err.message, /did not take the message within 300 ms/);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
