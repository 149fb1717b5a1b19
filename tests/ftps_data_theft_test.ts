/**
 * The data channel belongs to its session: an unauthenticated client on the same address that only sent
 * AUTH TLS, and then resumes its *own* TLS session on another session's passive port, must get neither the
 * download nor the upload. The attacker is Python (ssl with an explicit `session=`), the victim is a raw
 * client here; every loop is bounded.
 *
 * Deno 2.9.6's node:tls server resumes any session of the process (one process-wide ticket key; `ticketKeys`,
 * `setTicketKeys` and separate secure contexts do not change that, and `getSession()`/`exportKeyingMaterial` are
 * not available server-side), so the server cannot tell whose session was resumed. What closes it: a protected
 * passive data connection is held while another connection from the same address is encrypted but not logged
 * in, and refused if that lasts the data timeout. The victim's transfers fail (425) while such a client stays;
 * nothing is stolen or replaced.
 */
import assert from "node:assert/strict";
import { writeAll } from "../src/net/byte_conn.ts";
import { LineReader } from "../src/net/line_reader.ts";
import { startFtps } from "./helpers/ftps_fixture.ts";
import { readStream } from "./helpers/ftp_child.ts";
import { SYSTEM_PYTHON } from "./helpers/peers.ts";

const enc = new TextEncoder();

const ATTACKER = `
import socket, ssl, sys, time
port = int(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = socket.create_connection(("127.0.0.1", port))
f = c.makefile("rb")
f.readline()
c.sendall(b"AUTH TLS\\r\\n")
f.readline()
t = ctx.wrap_socket(c, server_hostname="127.0.0.1")
t.sendall(b"NOOP\\r\\n")
t.recv(100)
own = t.session
print("ready", flush=True)
for line in sys.stdin:
    p = int(line)
    got = b""
    resumed = False
    try:
        d = socket.create_connection(("127.0.0.1", p), timeout=5)
        s = ctx.wrap_socket(d, server_hostname="127.0.0.1", session=own)
        resumed = s.session_reused
        s.sendall(b"ATTACKER DATA")
        while len(got) < 1 << 20:
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
    except Exception as e:
        pass
    print("resumed=%s got=%d %s" % (resumed, len(got), got[:20].decode("latin1").replace("\\n", " ")), flush=True)
`;

class Raw {
  conn: Deno.Conn | Deno.TlsConn;
  reader: LineReader;
  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.reader = new LineReader(conn, { maxLineLength: 4096 });
  }
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
}

Deno.test({
  name: "FTPS: another client resuming its own TLS session gets no other session's data",
  fn: async () => {
    const fx = await startFtps({ requireSessionReuse: true }, { dataTimeoutMs: 3000 });
    const attacker = new Deno.Command(SYSTEM_PYTHON, {
      args: ["-c", ATTACKER, String(fx.port)],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const out = new LineReader({ read: (b: Uint8Array) => readStream(attacker.stdout, b) }, {
      maxLineLength: 4096,
    });
    const aw = attacker.stdin.getWriter();
    const victim = new Raw(await Deno.connect({ hostname: "127.0.0.1", port: fx.port }));
    const results: string[] = [];
    try {
      assert.equal(await out.readLine(), "ready");
      await Deno.writeTextFile(`${fx.root}/private.txt`, "VICTIM SECRET\n");
      assert.match(await victim.reply(), /^220 /);
      assert.match(await victim.send("AUTH TLS"), /^234 /);
      victim.conn = await Deno.startTls(victim.conn as Deno.TcpConn, {
        hostname: "localhost",
        caCerts: [fx.certPem],
      });
      victim.reader.setSource(victim.conn);
      assert.match(await victim.send("USER alice"), /^331 /);
      assert.match(await victim.send("PASS secret"), /^230 /);
      assert.match(await victim.send("PBSZ 0"), /^200 /);
      assert.match(await victim.send("PROT P"), /^200 /);
      assert.match(await victim.send("TYPE I"), /^200 /);
      for (let i = 0; i < 5; i++) {
        const verb = i % 2 === 0 ? "RETR private.txt" : `STOR up${i}.txt`;
        const m = /\(\|\|\|(\d+)\|\)/.exec(await victim.send("EPSV"));
        assert.ok(m);
        // The attacker reaches the passive port first, resuming its own session.
        await aw.write(enc.encode(`${m[1]}\n`));
        await new Promise((r) => setTimeout(r, 300));
        const opened = await victim.send(verb);
        const line = await out.readLine();
        results.push(`${verb}: ${opened.slice(0, 3)} attacker ${line}`);
        if (/^1\d\d /.test(opened)) {
          // The attacker did not get the connection: the transfer finds no data connection in time.
          results.push(`  final ${(await victim.reply()).slice(0, 3)}`);
        }
      }
      const stolen = results.filter((r) => /got=[1-9]|VICTIM/.test(r));
      const uploads = [1, 3].filter((i) => {
        try {
          return Deno.readTextFileSync(`${fx.root}/up${i}.txt`).includes("ATTACKER");
        } catch {
          return false;
        }
      });
      assert.deepEqual({ stolen, uploads }, { stolen: [], uploads: [] }, results.join("\n"));
      // The attacker's connections were held, then refused: the victim's transfers end with 425, not 226.
      assert.ok(
        results.filter((r) => r.includes("final")).every((r) => /final 425/.test(r)),
        results.join("\n"),
      );
      console.log(results.join("\n"));
    } finally {
      await aw.close().catch(() => {});
      try {
        victim.conn.close();
      } catch {
        // Closed.
      }
      attacker.kill("SIGKILL");
      await attacker.status;
      await attacker.stdout.cancel().catch(() => {});
      await fx.close();
    }
  },
});
