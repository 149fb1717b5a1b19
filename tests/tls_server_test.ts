/**
 * Server-side TLS (src/net/tls_server.ts) against real clients: Deno's TLS client and `openssl s_client`.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as net from "node:net";
import { createSelfSignedCertificate } from "../src/net/certificate.ts";
import { LineReader } from "../src/net/line_reader.ts";
import { NodeConn } from "../src/net/node_conn.ts";
import { writeAll } from "../src/net/byte_conn.ts";
import {
  connectTlsData,
  createServerTlsContext,
  type ServerTlsContext,
  TLS_READ_HIGH_WATER,
  TlsListener,
  upgradeServerSocket,
} from "../src/net/tls_server.ts";
import { findPeer, skipWithout } from "./helpers/peers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const pair = await createSelfSignedCertificate({ hostname: "outpost-test" });
const ctx: ServerTlsContext = createServerTlsContext({ cert: pair.certPem, key: pair.keyPem });
const OPENSSL = findPeer("openssl");

/** Reads lines from a Deno conn until one starts with `prefix`; bounded. */
async function readReply(reader: LineReader, prefix: string): Promise<string> {
  for (let i = 0; i < 20; i++) {
    const line = await reader.readLine();
    if (line === null) throw new Error(`Connection closed before "${prefix}"`);
    if (line.startsWith(prefix)) return line;
  }
  throw new Error(`No "${prefix}" line in 20 lines`);
}

/** A one-connection plain node:net server with pauseOnConnect; resolves the accepted socket. */
function plainServer(): Promise<{ port: number; accepted: Promise<net.Socket>; close: () => Promise<void> }> {
  return new Promise((resolve) => {
    let gotSocket!: (s: net.Socket) => void;
    const accepted = new Promise<net.Socket>((r) => gotSocket = r);
    const server = net.createServer({ pauseOnConnect: true }, (s) => gotSocket(s));
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        accepted,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

Deno.test("AUTH TLS upgrade: plaintext pipelined after the upgrade command is discarded, not executed", async () => {
  const srv = await plainServer();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
  // The attack: the upgrade command and a command after it in ONE packet, before any TLS.
  await writeAll(client, enc.encode("AUTH TLS\r\nUSER x\r\n"));
  const sock = await srv.accepted;
  const control = new NodeConn(sock);
  const reader = new LineReader(control, { maxLineLength: 512 });
  assert.equal(await reader.readLine(), "AUTH TLS");
  // The server's side of the upgrade point: pause and detach first, answer, then wrap.
  const raw = control.detach();
  raw.write("234 Proceed with negotiation.\r\n");
  const upgraded = upgradeServerSocket(raw, ctx);

  // The client reads the 234 in plaintext, then upgrades itself.
  const plainReader = new LineReader(client);
  assert.equal(await readReply(plainReader, "234"), "234 Proceed with negotiation.");
  const tlsClient = await Deno.startTls(client, { hostname: "localhost", caCerts: [pair.certPem] });
  const tlsConn = await upgraded;
  const dropped = reader.setSource(tlsConn);
  assert.equal(dropped, "USER x\r\n".length, "the pipelined USER is dropped from the line buffer");

  await writeAll(tlsClient, enc.encode("PING\r\n"));
  assert.equal(await reader.readLine(), "PING", "the first line read after the upgrade came over TLS");
  await tlsConn.write(enc.encode("200 PONG\r\n"));
  const clientReader = new LineReader(tlsClient);
  assert.equal(await clientReader.readLine(), "200 PONG");
  assert.equal(tlsConn.remoteAddress, "127.0.0.1");
  assert.equal(tlsConn.sessionReused, false);
  assert.match(tlsConn.protocol ?? "", /^TLSv1\.[23]$/);
  tlsClient.close();
  assert.equal(await reader.readLine(), null);
  tlsConn.close();
  await srv.close();
});

function pattern(i: number): number {
  return (i * 7 + (i >> 12)) & 0xff;
}

Deno.test("TlsListener: 4 MiB each way with one reused buffer per connection keeps every byte", async () => {
  const l = new TlsListener({ hostname: "127.0.0.1", port: 0, context: ctx });
  await l.listen();
  const total = 4 * 1024 * 1024;
  const data = new Uint8Array(total);
  for (let i = 0; i < total; i++) data[i] = pattern(i);
  const want = createHash("sha256").update(data).digest("hex");

  // Upload: the client sends and closes; the server reads into one buffer until the end of the stream.
  const up = await Deno.connectTls({ hostname: "127.0.0.1", port: l.port, caCerts: [pair.certPem] });
  const upConn = (await l.accept())!;
  const sending = (async () => {
    for (let off = 0; off < total; off += 100_000) {
      await writeAll(up, data.subarray(off, Math.min(total, off + 100_000)));
    }
    up.close();
  })();
  const buf = new Uint8Array(64 * 1024); // the one buffer of this connection
  const h1 = createHash("sha256");
  let got = 0;
  for (let i = 0; i < 100_000; i++) {
    const n = await upConn.read(buf);
    if (n === null) break;
    h1.update(buf.subarray(0, n));
    got += n;
  }
  await sending;
  upConn.close();
  assert.equal(got, total);
  assert.equal(h1.digest("hex"), want);

  // Download: the server refills the SAME buffer after each write; the bytes must not change in flight.
  const down = await Deno.connectTls({ hostname: "127.0.0.1", port: l.port, caCerts: [pair.certPem] });
  const downConn = (await l.accept())!;
  const serving = (async () => {
    for (let off = 0; off < total; off += buf.length) {
      const n = Math.min(buf.length, total - off);
      for (let j = 0; j < n; j++) buf[j] = pattern(off + j);
      await downConn.write(buf.subarray(0, n)); // resolves once TLS took the bytes: buf is free again
    }
    await downConn.shutdown();
  })();
  const h2 = createHash("sha256");
  const rbuf = new Uint8Array(64 * 1024);
  got = 0;
  for (let i = 0; i < 100_000; i++) {
    const n = await down.read(rbuf);
    if (n === null) break;
    h2.update(rbuf.subarray(0, n));
    got += n;
  }
  await serving;
  down.close();
  assert.equal(got, total);
  assert.equal(h2.digest("hex"), want);
  await l.close();
});

/** `p`, or a rejection with `msg` when it has not settled in `ms` (a guard against hanging, not a timing test). */
async function withDeadline<T>(p: Promise<T>, ms: number, msg: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => timer = setTimeout(() => reject(new Error(msg)), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("TlsConn: a slow reader holds the sender back (bounded queue) and still sees the end of the stream", async () => {
  // The Deno 2.9 bug this guards against: a paused server TLSSocket kept reading (memory grew with the upload)
  // and lost the client's close_notify/FIN, so an upload to a slow disk never finished.
  const l = new TlsListener({ hostname: "127.0.0.1", port: 0, context: ctx });
  await l.listen();
  const total = 24 * 1024 * 1024;
  const client = await Deno.connectTls({ hostname: "127.0.0.1", port: l.port, caCerts: [pair.certPem] });
  const conn = (await l.accept())!;
  const block = new Uint8Array(256 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = pattern(i);
  const hSent = createHash("sha256");
  const sending = (async () => {
    for (let off = 0; off < total; off += block.length) {
      await writeAll(client, block);
      hSent.update(block);
    }
    await client.closeWrite(); // close_notify + FIN, the way curl ends an upload
  })();
  const buf = new Uint8Array(64 * 1024);
  const h = createHash("sha256");
  let got = 0, reads = 0;
  for (let i = 0; i < 100_000; i++) {
    const n = await withDeadline(conn.read(buf), 30_000, `read ${reads} after ${got} bytes never finished`);
    if (n === null) break;
    h.update(buf.subarray(0, n));
    got += n;
    // Much slower than the sender at first (a disk slower than the network): the queue fills up to the high
    // water and the TCP reads stop; then fast, so the end of the stream arrives while they may be stopped.
    if (++reads % 16 === 0 && reads < 256) await new Promise((r) => setTimeout(r, 20));
  }
  await sending;
  assert.equal(got, total, "every byte and then the end of the stream");
  assert.equal(h.digest("hex"), hSent.digest("hex"));
  // Bounded by the high water plus what was in flight when the TCP reads stopped (one read of 64 KiB).
  assert.ok(
    conn.peakQueued <= TLS_READ_HIGH_WATER + 128 * 1024,
    `queued ${conn.peakQueued} bytes, more than the high water ${TLS_READ_HIGH_WATER} allows`,
  );
  await conn.end(1000);
  client.close();
  await l.close();
});

Deno.test("TlsListener: admit() drops a refused peer before the handshake; accept() after close is null", async () => {
  const rejected: string[] = [];
  const l = new TlsListener({
    hostname: "127.0.0.1",
    port: 0,
    context: ctx,
    admit: () => false,
    onReject: (ip, why) => rejected.push(`${ip} ${why}`),
  });
  await l.listen();
  const c = await Deno.connect({ hostname: "127.0.0.1", port: l.port });
  const buf = new Uint8Array(16);
  assert.equal(await c.read(buf).catch(() => null), null, "the refused connection is closed");
  c.close();
  assert.deepEqual(rejected, ["127.0.0.1 not admitted"]);
  await l.close();
  assert.equal(await l.accept(), null);
});

Deno.test("TlsListener: a peer that never handshakes times out and is not queued", async () => {
  let rejectedWhy = "";
  let onRejected!: () => void;
  const rejectedP = new Promise<void>((r) => onRejected = r);
  const l = new TlsListener({
    hostname: "127.0.0.1",
    port: 0,
    context: ctx,
    timeoutMs: 200,
    onReject: (_ip, why) => {
      rejectedWhy = why;
      onRejected();
    },
  });
  await l.listen();
  const c = await Deno.connect({ hostname: "127.0.0.1", port: l.port });
  await rejectedP;
  assert.match(rejectedWhy, /did not finish it in time/);
  assert.equal(l.queued, 0);
  c.close();
  await l.close();
});

Deno.test("connectTlsData: active mode connects out and is the TLS server on that connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serverSide = connectTlsData("127.0.0.1", (listener.addr as Deno.NetAddr).port, ctx);
  const accepted = await listener.accept();
  const clientTls = await Deno.startTls(accepted, { hostname: "localhost", caCerts: [pair.certPem] });
  const conn = await serverSide;
  await conn.write(enc.encode("hello over active TLS"));
  const shut = conn.shutdown();
  const buf = new Uint8Array(64);
  let text = "";
  for (let i = 0; i < 10; i++) {
    const n = await clientTls.read(buf);
    if (n === null) break;
    text += dec.decode(buf.subarray(0, n));
  }
  assert.equal(text, "hello over active TLS");
  clientTls.close();
  await shut;
  listener.close();
});

async function sClient(port: number, extra: string[], input: string): Promise<string> {
  const child = new Deno.Command(OPENSSL!, {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", ...extra],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(enc.encode(input));
  // Leave stdin open until the server has answered, so the TLS 1.3 ticket arrives before s_client quits.
  const out = child.output();
  await new Promise((r) => setTimeout(r, 300));
  await w.close();
  const res = await out;
  return dec.decode(res.stdout) + dec.decode(res.stderr);
}

Deno.test({
  name: "TlsListener: openssl s_client sees the certificate and resumes the session on a second connection",
  ignore: skipWithout(OPENSSL),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const l = new TlsListener({ hostname: "127.0.0.1", port: 0, context: ctx });
    await l.listen();
    const serve = async (): Promise<boolean> => {
      const conn = (await l.accept())!;
      const reused = conn.sessionReused;
      const buf = new Uint8Array(256);
      const n = await conn.read(buf);
      await conn.write(enc.encode(`echo ${dec.decode(buf.subarray(0, n ?? 0))}`));
      await conn.shutdown();
      return reused;
    };
    for (const version of ["-tls1_3", "-tls1_2"]) {
      const sess = `${dir}/sess${version}.pem`;
      const first = serve();
      const out1 = await sClient(l.port, [version, "-sess_out", sess], "one\n");
      assert.match(out1, /subject=.*CN\s*=\s*outpost-test/);
      assert.match(out1, /echo one/);
      assert.equal(await first, false);
      const second = serve();
      const out2 = await sClient(l.port, [version, "-sess_in", sess], "two\n");
      assert.match(out2, /echo two/);
      assert.match(out2, /Reused, TLSv1\.[23]/);
      assert.equal(await second, true, `${version} session resumed`);
    }
    await l.close();
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("TlsListener: verify() drops a handshaken connection that did not resume a session", async () => {
  const reasons: string[] = [];
  let onRejected!: () => void;
  const rejectedP = new Promise<void>((r) => onRejected = r);
  const l = new TlsListener({
    hostname: "127.0.0.1",
    port: 0,
    context: ctx,
    verify: (c) => c.sessionReused ? null : "the data connection did not resume the TLS session",
    onReject: (_ip, why) => {
      reasons.push(why);
      onRejected();
    },
  });
  await l.listen();
  // Deno's TLS client does not resume across connections: a fresh full handshake.
  const c = await Deno.connectTls({ hostname: "127.0.0.1", port: l.port, caCerts: [pair.certPem] });
  await rejectedP;
  assert.deepEqual(reasons, ["the data connection did not resume the TLS session"]);
  assert.equal(l.queued, 0);
  const buf = new Uint8Array(8);
  assert.equal(await c.read(buf).catch(() => null), null);
  c.close();
  await l.close();
});
