/**
 * The ClientHello reader (src/net/client_hello.ts) on ClientHellos captured live from curl, lftp, openssl s_client
 * and Python, on hostile bytes, and the per-client TLS version choice in `upgradeServerSocket` with a selecting
 * context.
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import {
  firstRecordLength,
  parseClientHello,
  preferredMaxVersion,
  TLS_MAX_FIRST_RECORD,
} from "../src/net/client_hello.ts";
import { createSelfSignedCertificate } from "../src/net/certificate.ts";
import { createServerTlsContext, type ServerTlsContext, upgradeServerSocket } from "../src/net/tls_server.ts";
import { findPeer, requirePeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";

const CURL = findPeer("curl");
const LFTP = findPeer("lftp");
const OPENSSL = findPeer("openssl");
const PYTHON = findPeer(SYSTEM_PYTHON);

/** Accepts one connection on a plain node:net server, returns its first TLS record, and kills the client. */
async function captureClientHello(cmd: string, args: (port: number) => string[]): Promise<Uint8Array> {
  let gotSocket!: (s: net.Socket) => void;
  const accepted = new Promise<net.Socket>((r) => gotSocket = r);
  const server = net.createServer((s) => gotSocket(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const child = new Deno.Command(cmd, { args: args(port), stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
  try {
    const sock = await accepted;
    return await new Promise<Uint8Array>((resolve, reject) => {
      let acc = new Uint8Array(0);
      const timer = setTimeout(() => reject(new Error(`${cmd} sent no ClientHello in time`)), 20_000);
      sock.on("error", () => {});
      sock.on("data", (d: Uint8Array) => {
        const next = new Uint8Array(acc.length + d.length);
        next.set(acc);
        next.set(d, acc.length);
        acc = next;
        const need = firstRecordLength(acc);
        if (need !== 0 && (need < 0 || acc.length >= need)) {
          clearTimeout(timer);
          sock.destroy();
          resolve(acc);
        }
      });
    });
  } finally {
    try {
      child.kill();
    } catch {
      // already exited
    }
    await child.status;
    await new Promise<void>((r) => server.close(() => r()));
  }
}

const TICKET_CLIENTS: [string, string | null, (port: number) => string[]][] = [
  ["lftp", LFTP, (p) => [
    "-c",
    `set net:max-retries 1; set net:timeout 5; set ssl:verify-certificate no; open ftps://127.0.0.1:${p}; ls`,
  ]],
  ["openssl", OPENSSL, (p) => ["s_client", "-connect", `127.0.0.1:${p}`]],
  ["python", PYTHON, (p) => [
    "-c",
    "import socket, ssl\nc = ssl.create_default_context()\nc.check_hostname = False\n" +
    "c.verify_mode = ssl.CERT_NONE\ntry:\n    c.wrap_socket(socket.create_connection(('127.0.0.1', " + p +
    ")))\nexcept Exception:\n    pass\n",
  ]],
];

for (const [name, peer, args] of TICKET_CLIENTS) {
  Deno.test({
    name: `ClientHello: ${name} offers the TLS 1.2 session_ticket extension, so it gets TLS 1.2`,
    ignore: skipWithout(peer),
    fn: async () => {
      const hello = parseClientHello(
        await captureClientHello(requirePeer(name === "python" ? SYSTEM_PYTHON : name), args),
      );
      assert.ok(hello, "parsed");
      assert.equal(hello.sessionTicket, true);
      assert.ok(hello.supportedVersions.includes(0x0304), "offers TLS 1.3 too");
      assert.equal(preferredMaxVersion(hello), "TLSv1.2");
    },
  });
}

Deno.test({
  name: "ClientHello: curl (FTPS) offers TLS 1.3 without the session_ticket extension, so it gets TLS 1.3",
  ignore: skipWithout(CURL),
  fn: async () => {
    const curl = requirePeer("curl");
    const record = await captureClientHello(
      curl,
      (p) => ["-sk", "--max-time", "5", `ftps://127.0.0.1:${p}/`],
    );
    const hello = parseClientHello(record);
    assert.ok(hello, "parsed");
    assert.equal(hello.sessionTicket, false);
    assert.ok(hello.supportedVersions.includes(0x0304));
    assert.equal(hello.legacyVersion, 0x0303);
    assert.equal(preferredMaxVersion(hello), "TLSv1.3");

    // Every truncation of a real ClientHello is rejected, never misread or thrown on.
    for (let n = 0; n < record.length; n++) {
      assert.equal(parseClientHello(record.subarray(0, n)), null, `${n}`);
    }
    // A TLS 1.2-only curl offers neither 1.3 nor tickets: TLS 1.2.
    const old = parseClientHello(
      await captureClientHello(
        curl,
        (p) => ["-sk", "--max-time", "5", "--tls-max", "1.2", `ftps://127.0.0.1:${p}/`],
      ),
    );
    assert.ok(old);
    assert.equal(old.supportedVersions.includes(0x0304), false);
    assert.equal(preferredMaxVersion(old), "TLSv1.2");
  },
});

/** A minimal ClientHello record with the given extensions (type, body). */
function hello(exts: [number, number[]][], opts: { recordLen?: number; extLen?: number } = {}): Uint8Array {
  const extBytes = exts.flatMap(([t, b]) => [t >> 8, t & 255, b.length >> 8, b.length & 255, ...b]);
  const extLen = opts.extLen ?? extBytes.length;
  const body = [
    3,
    3,
    ...new Array(32).fill(7),
    0,
    0,
    2,
    0x13,
    0x01,
    1,
    0,
    extLen >> 8,
    extLen & 255,
    ...extBytes,
  ];
  const hs = [1, 0, body.length >> 8, body.length & 255, ...body];
  const len = opts.recordLen ?? hs.length;
  return new Uint8Array([0x16, 3, 1, len >> 8, len & 255, ...hs]);
}

Deno.test("ClientHello: hostile and odd records are refused without throwing", () => {
  const v13 = [43, [4, 3, 4, 3, 3]] as [number, number[]];
  assert.equal(preferredMaxVersion(parseClientHello(hello([v13]))), "TLSv1.3");
  assert.equal(preferredMaxVersion(parseClientHello(hello([v13, [35, []]]))), "TLSv1.2");
  assert.equal(preferredMaxVersion(parseClientHello(hello([]))), "TLSv1.2");
  // Unknown: the context that serves every client (1.2 and 1.3); TLS 1.3 only, with or without a ticket: 1.3.
  assert.equal(preferredMaxVersion(null), "TLSv1.3");
  const only13 = [43, [2, 3, 4]] as [number, number[]];
  assert.equal(preferredMaxVersion(parseClientHello(hello([only13, [35, []]]))), "TLSv1.3");
  assert.equal(preferredMaxVersion(parseClientHello(hello([only13]))), "TLSv1.3");
  // Extension length past the end, odd version list, list length lying, extensions block length lying.
  assert.equal(parseClientHello(hello([[43, [9, 3, 4]]])), null);
  assert.equal(parseClientHello(hello([[43, [3, 3, 4, 3]]])), null);
  assert.equal(parseClientHello(hello([v13], { extLen: 200 })), null);
  assert.equal(parseClientHello(hello([v13], { extLen: 2 })), null);
  // Not a handshake record, not a ClientHello, a record longer than TLS allows.
  assert.equal(firstRecordLength(new TextEncoder().encode("USER x\r\n")), -1);
  assert.equal(parseClientHello(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")), null);
  const notHello = hello([v13]);
  notHello[5] = 2;
  assert.equal(parseClientHello(notHello), null);
  assert.equal(firstRecordLength(new Uint8Array([0x16, 3, 1, 0x40, 0x01])), -1);
  assert.equal(firstRecordLength(new Uint8Array([0x16, 3, 1, 0x40, 0x00])), TLS_MAX_FIRST_RECORD);
  assert.equal(firstRecordLength(new Uint8Array([0x16, 3])), 0);
  // Random bytes: never throws.
  const rnd = new Uint8Array(600);
  for (let i = 0; i < 2000; i++) {
    crypto.getRandomValues(rnd);
    rnd[0] = 0x16;
    rnd[1] = 3;
    rnd[5] = 1;
    parseClientHello(rnd);
  }
});

const pair = await createSelfSignedCertificate({ hostname: "outpost-test" });
const tls12 = createServerTlsContext({ cert: pair.certPem, key: pair.keyPem, maxVersion: "TLSv1.2" });
const tls13 = createServerTlsContext({ cert: pair.certPem, key: pair.keyPem, maxVersion: "TLSv1.3" });

/** Accepts one paused socket and upgrades it with a context that records what it was shown. */
async function selectingServer(
  seen: ("TLSv1.2" | "TLSv1.3" | "none")[],
  timeoutMs = 10_000,
  force?: ServerTlsContext,
) {
  const ctx: ServerTlsContext = {
    ...tls12,
    select: (h) => {
      seen.push(h === null ? "none" : preferredMaxVersion(h));
      return force ?? (h !== null && preferredMaxVersion(h) === "TLSv1.3" ? tls13 : tls12);
    },
  };
  // Wrapped in an object so that the handshake's promise is not flattened into the accept promise.
  let got!: (p: { handshake: ReturnType<typeof upgradeServerSocket> }) => void;
  const upgraded = new Promise<{ handshake: ReturnType<typeof upgradeServerSocket> }>((r) => got = r);
  const server = net.createServer(
    { pauseOnConnect: true },
    (s) => got({ handshake: upgradeServerSocket(s, ctx, { timeoutMs }) }),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    upgraded,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

Deno.test("upgradeServerSocket with a selecting context: the peeked ClientHello still reaches the handshake", async () => {
  for (const force of [undefined, tls12, tls13]) {
    const seen: ("TLSv1.2" | "TLSv1.3" | "none")[] = [];
    const srv = await selectingServer(seen, 10_000, force);
    // Deno's client (rustls) offers TLS 1.3 and TLS 1.2 session tickets: TLS 1.2 unless forced.
    const client = await Deno.connectTls({ hostname: "127.0.0.1", port: srv.port, caCerts: [pair.certPem] });
    const conn = await (await srv.upgraded).handshake;
    assert.deepEqual(seen, ["TLSv1.2"]);
    assert.equal(conn.protocol, force === tls13 ? "TLSv1.3" : "TLSv1.2");
    assert.equal(conn.context, force ?? tls12, "the connection remembers the chosen context");
    await client.write(new TextEncoder().encode("ping"));
    const buf = new Uint8Array(16);
    assert.equal(await conn.read(buf), 4);
    await conn.write(new TextEncoder().encode("pong"));
    assert.equal(await client.read(buf), 4);
    client.close();
    assert.equal(await conn.read(buf), null);
    conn.close();
    await srv.close();
  }
});

Deno.test("upgradeServerSocket with a selecting context: plaintext fails the handshake, silence times out", async () => {
  const seen: ("TLSv1.2" | "TLSv1.3" | "none")[] = [];
  let srv = await selectingServer(seen);
  let c = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
  await c.write(new TextEncoder().encode("USER alice\r\n"));
  await assert.rejects((await srv.upgraded).handshake, /did not start with a TLS ClientHello/);
  assert.deepEqual(seen, [], "no context is chosen for plaintext");
  c.close();
  await srv.close();

  srv = await selectingServer(seen, 300);
  c = await Deno.connect({ hostname: "127.0.0.1", port: srv.port });
  await assert.rejects((await srv.upgraded).handshake, /did not finish it in time/);
  c.close();
  await srv.close();
});
