/**
 * FTPS protocol rules with a raw client: AUTH TLS upgrade, pipelined plaintext, required mode, PBSZ/PROT/CCC,
 * FEAT, data connections bound to their session, implicit TLS, and `openssl s_client -starttls ftp`.
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import { setLogSink } from "../src/log/logger.ts";
import { writeAll } from "../src/net/byte_conn.ts";
import { LineReader } from "../src/net/line_reader.ts";
import { startFtps } from "./helpers/ftps_fixture.ts";
import { findPeer, skipWithout } from "./helpers/peers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const OPENSSL = findPeer("openssl");

/** A raw control connection that can upgrade itself to TLS. */
class RawClient {
  conn: Deno.Conn | Deno.TlsConn;
  reader: LineReader;
  constructor(conn: Deno.Conn | Deno.TlsConn) {
    this.conn = conn;
    this.reader = new LineReader(conn, { maxLineLength: 4096 });
  }
  static async open(port: number): Promise<RawClient> {
    const c = new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
    assert.match(await c.reply(), /^220 /);
    return c;
  }
  static async openImplicit(port: number, certPem: string): Promise<RawClient> {
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [certPem] });
    const c = new RawClient(conn);
    assert.match(await c.reply(), /^220 /);
    return c;
  }
  /** Reads one (possibly multi-line) reply; returns all its lines joined by "\n". */
  async reply(): Promise<string> {
    const lines: string[] = [];
    for (let i = 0; i < 200; i++) {
      const l = await this.reader.readLine();
      if (l === null) throw new Error(`Connection closed after: ${lines.join("\n")}`);
      lines.push(l);
      if (/^\d{3} /.test(l) && (lines.length === 1 || l.startsWith(lines[0].slice(0, 3)))) break;
    }
    return lines.join("\n");
  }
  async send(line: string): Promise<string> {
    await writeAll(this.conn, enc.encode(line + "\r\n"));
    return await this.reply();
  }
  async startTls(certPem: string): Promise<void> {
    this.conn = await Deno.startTls(this.conn as Deno.TcpConn, { hostname: "localhost", caCerts: [certPem] });
    this.reader.setSource(this.conn);
  }
  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

function epsvPort(reply: string): number {
  const m = /\(\|\|\|(\d+)\|\)/.exec(reply);
  assert.ok(m, `not an EPSV reply: ${reply}`);
  return Number(m[1]);
}

async function readAll(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(4096);
  let out = "";
  for (let i = 0; i < 1000; i++) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    out += dec.decode(buf.subarray(0, n));
  }
  return out;
}

Deno.test("FTPS: FEAT advertises AUTH TLS, PBSZ and PROT; AUTH TLS upgrades; PBSZ/PROT/CCC answers", async () => {
  const fx = await startFtps();
  const c = await RawClient.open(fx.port);
  try {
    const feat = await c.send("FEAT");
    for (const f of ["AUTH TLS", "AUTH SSL", "PBSZ", "PROT"]) assert.match(feat, new RegExp(`^ ${f}$`, "m"));
    assert.match(await c.send("PBSZ 0"), /^503 /, "PBSZ before AUTH TLS");
    assert.match(await c.send("PROT P"), /^503 /, "PROT before AUTH TLS");
    assert.match(await c.send("AUTH KERBEROS"), /^504 /);
    assert.match(await c.send("AUTH TLS"), /^234 /);
    await c.startTls(fx.certPem);
    assert.match(await c.send("AUTH TLS"), /^503 /, "a second AUTH on a TLS connection");
    assert.match(await c.send("PBSZ 0"), /^200 PBSZ=0/);
    assert.match(await c.send("PBSZ 1024"), /^200 PBSZ=0/);
    assert.match(await c.send("PROT S"), /^536 /);
    assert.match(await c.send("PROT E"), /^536 /);
    assert.match(await c.send("PROT X"), /^504 /);
    assert.match(await c.send("PROT P"), /^200 /);
    assert.match(await c.send("PROT C"), /^200 /);
    assert.match(await c.send("CCC"), /^534 /);
    assert.match(await c.send("USER alice"), /^331 /);
    assert.match(await c.send("PASS secret"), /^230 /);
    assert.match(await c.send("QUIT"), /^221 /);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("FTPS: 'AUTH TLS\\r\\nUSER x\\r\\n' in one packet: the pipelined USER is discarded, never executed", async () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  const fx = await startFtps();
  const c = await RawClient.open(fx.port);
  try {
    await writeAll(c.conn, enc.encode("AUTH TLS\r\nUSER alice\r\n"));
    assert.match(await c.reply(), /^234 /);
    await c.startTls(fx.certPem);
    // Had USER alice been executed, PASS would log in (230); it must say USER is needed first.
    assert.match(await c.send("PASS secret"), /^503 /);
    assert.match(await c.send("NOOP"), /^200 /);
    assert.ok(lines.some((l) => /tls\.upgrade .*discarded=12\b/.test(l)), lines.join("\n"));
  } finally {
    c.close();
    await fx.close();
    setLogSink(restore);
  }
});

Deno.test("FTPS: AUTH SSL is an alias; mode off answers AUTH with 502 and FEAT has no AUTH", async () => {
  const fx = await startFtps();
  const c = await RawClient.open(fx.port);
  const off = await startFtps({ mode: "off", implicitPort: null });
  const d = await RawClient.open(off.port);
  try {
    assert.match(await c.send("AUTH SSL"), /^234 /);
    await c.startTls(fx.certPem);
    assert.match(await c.send("NOOP"), /^200 /);
    assert.doesNotMatch(await d.send("FEAT"), /AUTH|PBSZ|PROT/);
    assert.match(await d.send("AUTH TLS"), /^502 /);
    assert.match(await d.send("PBSZ 0"), /^502 /);
  } finally {
    c.close();
    d.close();
    await fx.close();
    await off.close();
  }
});

Deno.test("FTPS required: plaintext USER/PASS get 530 TLS required; data needs PROT P (521)", async () => {
  const fx = await startFtps({ mode: "required", requireSessionReuse: false });
  const c = await RawClient.open(fx.port);
  try {
    const u = await c.send("USER alice");
    assert.match(u, /^530 /);
    assert.match(u, /TLS/);
    assert.match(await c.send("PASS secret"), /^530 .*TLS/);
    assert.match(await c.send("AUTH TLS"), /^234 /);
    await c.startTls(fx.certPem);
    assert.match(await c.send("USER alice"), /^331 /);
    assert.match(await c.send("PASS secret"), /^230 /);
    assert.match(await c.send("PBSZ 0"), /^200 /);
    assert.match(await c.send("PROT C"), /^534 /, "clear data is refused when TLS is required");
    const port = epsvPort(await c.send("EPSV"));
    assert.match(await c.send("LIST"), /^521 /, "no transfer before PROT P");
    assert.match(await c.send("PROT P"), /^200 /);
    await Deno.writeTextFile(`${fx.root}/hello.txt`, "hello over tls\n");
    const port2 = epsvPort(await c.send("EPSV"));
    assert.notEqual(port2, 0);
    void port;
    const data = await Deno.connectTls({ hostname: "127.0.0.1", port: port2, caCerts: [fx.certPem] });
    assert.match(await c.send("TYPE I"), /^200 /);
    assert.match(await c.send("RETR hello.txt"), /^150 /);
    assert.equal(await readAll(data), "hello over tls\n");
    data.close();
    assert.match(await c.reply(), /^226 /);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("FTPS: a TLS data connection that did not resume the session is refused and logged", async () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  const fx = await startFtps({ requireSessionReuse: true }, { dataTimeoutMs: 3000 });
  const a = await RawClient.open(fx.port);
  try {
    assert.match(await a.send("AUTH TLS"), /^234 /);
    await a.startTls(fx.certPem);
    assert.match(await a.send("USER alice"), /^331 /);
    assert.match(await a.send("PASS secret"), /^230 /);
    assert.match(await a.send("PBSZ 0"), /^200 /);
    assert.match(await a.send("PROT P"), /^200 /);
    const port = epsvPort(await a.send("EPSV"));
    // Another client (a fresh TLS handshake that resumes nothing) tries the port first.
    const stray = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [fx.certPem] });
    assert.equal(await readAll(stray), "", "the stray connection is closed without data");
    stray.close();
    assert.ok(
      lines.some((l) => /tls\.data_refused .*did not resume/.test(l)),
      lines.join("\n"),
    );
    // The session's transfer then finds no acceptable connection and fails cleanly.
    assert.match(await a.send("LIST"), /^150 /);
    assert.match(await a.reply(), /^425 /);
  } finally {
    a.close();
    await fx.close();
    setLogSink(restore);
  }
});

Deno.test("FTPS: a passive port serves one connection of its own session only", async () => {
  const fx = await startFtps({ requireSessionReuse: false });
  const a = await RawClient.open(fx.port);
  try {
    assert.match(await a.send("AUTH TLS"), /^234 /);
    await a.startTls(fx.certPem);
    await a.send("USER alice");
    assert.match(await a.send("PASS secret"), /^230 /);
    await a.send("PBSZ 0");
    assert.match(await a.send("PROT P"), /^200 /);
    const port = epsvPort(await a.send("EPSV"));
    const data = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [fx.certPem] });
    assert.match(await a.send("NLST"), /^150 /);
    await readAll(data);
    data.close();
    assert.match(await a.reply(), /^226 /);
    // The port was used once: a second connection to it is refused.
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
  } finally {
    a.close();
    await fx.close();
  }
});

/** Logs in over explicit TLS with PROT P; returns the client. */
async function loginProtP(port: number, certPem: string): Promise<RawClient> {
  const c = await RawClient.open(port);
  assert.match(await c.send("AUTH TLS"), /^234 /);
  await c.startTls(certPem);
  assert.match(await c.send("USER alice"), /^331 /);
  assert.match(await c.send("PASS secret"), /^230 /);
  assert.match(await c.send("PBSZ 0"), /^200 /);
  assert.match(await c.send("PROT P"), /^200 /);
  return c;
}

/** Connects from `localAddress` and tries a TLS handshake; resolves to true if it completed, false if refused. */
function tlsFrom(localAddress: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    // Deno.connect has no local-address option: bind the source with node:net, then start TLS over it.
    const raw = net.connect({ host: "127.0.0.1", port, localAddress });
    const sock = tls.connect({ socket: raw, rejectUnauthorized: false });
    const timer = setTimeout(() => finish(false), 5000);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      raw.destroy();
      resolve(ok);
    };
    sock.once("secureConnect", () => finish(true));
    sock.once("error", () => finish(false));
    sock.once("close", () => finish(false));
  });
}

Deno.test("FTPS: a data connection from another peer address is refused; the session's own transfer works", async () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  // Session reuse off: this test isolates the address check (Deno's client cannot resume a session).
  const fx = await startFtps({ requireSessionReuse: false });
  const a = await loginProtP(fx.port, fx.certPem);
  try {
    await Deno.writeTextFile(`${fx.root}/mine.txt`, "only for the control peer\n");
    const port = epsvPort(await a.send("EPSV"));
    // 127.0.0.2 is loopback too, but not the control connection's peer address.
    assert.equal(await tlsFrom("127.0.0.2", port), false, "a TLS connection from 127.0.0.2 was accepted");
    assert.ok(
      lines.some((l) => /tls\.data_refused .*ip=127\.0\.0\.2 .*not the control peer/.test(l)),
      lines.join("\n"),
    );
    // The port is still the session's: its own client connects and the transfer completes.
    const data = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [fx.certPem] });
    assert.match(await a.send("TYPE I"), /^200 /);
    assert.match(await a.send("RETR mine.txt"), /^150 /);
    assert.equal(await readAll(data), "only for the control peer\n");
    data.close();
    assert.match(await a.reply(), /^226 /);
  } finally {
    a.close();
    await fx.close();
    setLogSink(restore);
  }
});

Deno.test("FTPS: another logged-in session cannot use this session's passive port", async () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  const fx = await startFtps({ requireSessionReuse: true }, { dataTimeoutMs: 3000 });
  const a = await loginProtP(fx.port, fx.certPem);
  const b = await loginProtP(fx.port, fx.certPem);
  try {
    await Deno.writeTextFile(`${fx.root}/a.txt`, "session a's file\n");
    const portA = epsvPort(await a.send("EPSV"));
    const portB = epsvPort(await b.send("EPSV"));
    assert.notEqual(portA, portB);
    // Session B, from the same address, connects to A's port: its handshake resumes nothing of A's.
    const stolen = await Deno.connectTls({ hostname: "127.0.0.1", port: portA, caCerts: [fx.certPem] });
    assert.equal(await readAll(stolen), "", "B's connection to A's port got no data");
    stolen.close();
    assert.ok(lines.some((l) => /tls\.data_refused id=1 .*did not resume/.test(l)), lines.join("\n"));
    // A's transfer does not go to B; with no acceptable data connection it ends cleanly with 425.
    assert.match(await a.send("TYPE I"), /^200 /);
    assert.match(await a.send("RETR a.txt"), /^150 /);
    assert.match(await a.reply(), /^425 /);
    // A's port is gone once A's transfer is over: B cannot come back to it.
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: portA }));
    // B's own session is unaffected.
    assert.match(await b.send("NOOP"), /^200 /);
  } finally {
    a.close();
    b.close();
    await fx.close();
    setLogSink(restore);
  }
});

Deno.test("FTPS implicit: TLS from the first byte, data protected by default", async () => {
  const fx = await startFtps({ requireSessionReuse: false });
  const c = await RawClient.openImplicit(fx.implicitPort, fx.certPem);
  try {
    assert.match(await c.send("AUTH TLS"), /^503 /);
    assert.match(await c.send("USER alice"), /^331 /);
    assert.match(await c.send("PASS secret"), /^230 /);
    await Deno.writeTextFile(`${fx.root}/i.txt`, "implicit\n");
    const port = epsvPort(await c.send("EPSV"));
    const data = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [fx.certPem] });
    assert.match(await c.send("TYPE I"), /^200 /);
    assert.match(await c.send("RETR i.txt"), /^150 /);
    assert.equal(await readAll(data), "implicit\n");
    data.close();
    assert.match(await c.reply(), /^226 /);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test({
  name: "FTPS: openssl s_client -starttls ftp shows the server certificate",
  ignore: skipWithout(OPENSSL),
  fn: async () => {
    const fx = await startFtps();
    try {
      const child = new Deno.Command(OPENSSL!, {
        args: ["s_client", "-starttls", "ftp", "-connect", `127.0.0.1:${fx.port}`, "-showcerts"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(enc.encode("QUIT\r\n"));
      await w.close();
      const out = await child.output();
      const text = dec.decode(out.stdout) + dec.decode(out.stderr);
      assert.match(text, /subject=.*CN\s*=\s*outpost-test/);
      assert.match(text, /-----BEGIN CERTIFICATE-----/);
    } finally {
      await fx.close();
    }
  },
});

Deno.test("FTPS config: [ftp.tls] is read and validated", async () => {
  const { Section } = await import("../src/config/section.ts");
  const { readFtpConfig } = await import("../src/ftp/ftp_config.ts");
  const problems: string[] = [];
  const o = readFtpConfig(
    new Section(
      { tls: { mode: "required", implicit_port: 990, require_tls_session_reuse: false } },
      "ftp",
      problems,
    ),
  );
  assert.deepEqual(problems, []);
  assert.equal(o.tls?.mode, "required");
  assert.equal(o.tls?.implicitPort, 990);
  assert.equal(o.tls?.requireSessionReuse, false);
  const p2: string[] = [];
  readFtpConfig(new Section({ tls: { mode: "sometimes", cert: "/c.pem", bogus: 1 } }, "ftp", p2));
  assert.ok(p2.some((p) => p.startsWith("ftp.tls.mode:")), p2.join("\n"));
  assert.ok(p2.some((p) => p.startsWith("ftp.tls.key: cert and key must be given together")), p2.join("\n"));
  assert.ok(p2.some((p) => p.startsWith("ftp.tls.bogus: unknown key")), p2.join("\n"));
  const p3: string[] = [];
  assert.equal(readFtpConfig(new Section({}, "ftp", p3)).tls?.mode, "off");
  assert.equal(
    readFtpConfig(new Section({}, "ftp", p3)).tls?.maxVersion,
    "auto",
    "TLS version chosen per client by default",
  );
  assert.deepEqual(p3, []);
  for (
    const [v, want] of [["1.3", "1.3"], [1.3, "1.3"], ["1.2", "1.2"], [1.2, "1.2"], ["auto", "auto"]] as const
  ) {
    const p4: string[] = [];
    assert.equal(readFtpConfig(new Section({ tls: { max_version: v } }, "ftp", p4)).tls?.maxVersion, want);
    assert.deepEqual(p4, []);
  }
  const p5: string[] = [];
  readFtpConfig(new Section({ tls: { max_version: "1.1" } }, "ftp", p5));
  assert.ok(p5.some((p) => p.startsWith('ftp.tls.max_version: must be "1.2" or "1.3"')), p5.join("\n"));
});
