/**
 * A real SMTP server for the mail tests: Debian's aiosmtpd (python3-aiosmtpd) on 127.0.0.1 with a port chosen by
 * the kernel, optionally with STARTTLS (required) or implicit TLS and AUTH, writing each accepted message to a
 * folder together with what Python's own `email` parser makes of it (decoded subject, attachment SHA-256s).
 * Also test certificates made with the openssl CLI: a CA, a server certificate for 127.0.0.1/localhost signed by
 * it, and a self-signed certificate that no CA vouches for.
 *
 * @module
 */

import { SYSTEM_PYTHON } from "./peers.ts";

const SINK_PY = String.raw`
import asyncio, email, hashlib, json, os, ssl, sys
from email import policy
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

cfg = json.loads(sys.argv[1])
outdir = cfg["outdir"]
count = 0

class Handler:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        base = os.path.join(outdir, "%06d" % count)
        raw = envelope.original_content or envelope.content
        info = {"from": envelope.mail_from, "to": envelope.rcpt_tos, "mail_options": envelope.mail_options,
                "auth": bool(session.authenticated), "tls": session.ssl is not None, "size": len(raw),
                "bare_lf": b"\n" in raw.replace(b"\r\n", b""), "max_line": max(len(l) for l in raw.split(b"\r\n"))}
        try:
            msg = email.message_from_bytes(raw, policy=policy.default)
            info["subject"] = str(msg["subject"]) if msg["subject"] is not None else None
            info["message_id"] = str(msg["message-id"]) if msg["message-id"] is not None else None
            info["from_header"] = str(msg["from"]) if msg["from"] is not None else None
            info["to_header"] = str(msg["to"]) if msg["to"] is not None else None
            info["bcc_header"] = msg["bcc"] is not None
            info["date"] = msg["date"] is not None
            body = msg.get_body(preferencelist=("plain",))
            info["text"] = body.get_content() if body is not None else None
            html = msg.get_body(preferencelist=("html",))
            info["html"] = html.get_content() if html is not None else None
            info["attachments"] = [{"filename": p.get_filename(),
                                    "sha256": hashlib.sha256(p.get_payload(decode=True)).hexdigest(),
                                    "size": len(p.get_payload(decode=True))} for p in msg.iter_attachments()]
            info["defects"] = [str(d) for p in msg.walk() for d in p.defects]
        except Exception as e:
            info["parse_error"] = repr(e)
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        with open(base + ".json.tmp", "w") as f:
            json.dump(info, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 OK queued as %06d" % count

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == cfg["auth"]["user"] \
        and auth_data.password.decode() == cfg["auth"]["password"]
    return AuthResult(success=ok, handled=False)

def ctx():
    c = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    c.load_cert_chain(cfg["cert"], cfg["key"])
    return c

async def main():
    loop = asyncio.get_running_loop()
    mode = cfg.get("mode", "plain")
    kw = dict(hostname="sink.test", enable_SMTPUTF8=True, data_size_limit=cfg.get("size", 100 * 1024 * 1024))
    if mode == "starttls":
        kw["tls_context"] = ctx(); kw["require_starttls"] = True
    if cfg.get("auth"):
        kw["authenticator"] = authenticator; kw["auth_required"] = True
        kw["auth_require_tls"] = mode == "starttls"
    server = await loop.create_server(lambda: SMTP(Handler(), **kw), "127.0.0.1", 0,
                                      ssl=ctx() if mode == "tls" else None)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()

asyncio.run(main())
`;

/** Paths of the test certificates. */
export interface TestCerts {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** A self-signed certificate for 127.0.0.1 that no CA vouches for. */
  selfCertFile: string;
  selfKeyFile: string;
  /** SHA-256 fingerprint of the self-signed certificate, "AB:CD:...". */
  selfFingerprint: string;
}

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * Makes a CA, a server certificate (SAN 127.0.0.1, localhost) and a self-signed certificate in `dir`.
 *
 * @example
 * ```ts
 * const certs = await makeTestCerts(await Deno.makeTempDir());
 * console.log(certs);
 * ```
 */
export async function makeTestCerts(dir: string): Promise<TestCerts> {
  const o = "openssl";
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
  );
  await run(o, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=outpost test CA",
  ], dir);
  await run(o, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  ], dir);
  await run(o, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ], dir);
  await run(o, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "self.key",
    "-out",
    "self.pem",
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], dir);
  const fp = await run(o, ["x509", "-in", "self.pem", "-noout", "-fingerprint", "-sha256"], dir);
  return {
    caFile: `${dir}/ca.pem`,
    certFile: `${dir}/server.pem`,
    keyFile: `${dir}/server.key`,
    selfCertFile: `${dir}/self.pem`,
    selfKeyFile: `${dir}/self.key`,
    selfFingerprint: fp.trim().split("=")[1],
  };
}

/** What the sink recorded about one accepted message. */
export interface SinkMessage {
  from: string;
  to: string[];
  mail_options: string[];
  auth: boolean;
  tls: boolean;
  size: number;
  bare_lf: boolean;
  max_line: number;
  subject: string | null;
  message_id: string | null;
  from_header: string | null;
  to_header: string | null;
  bcc_header: boolean;
  date: boolean;
  text: string | null;
  html: string | null;
  attachments: { filename: string; sha256: string; size: number }[];
  defects: string[];
  raw: Uint8Array;
}

/**
 * A running aiosmtpd sink.
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * const sink = await startSink({ mode: "plain", dir });
 * const msgs = await sink.waitFor(1);
 * console.log(msgs[0]);
 * await sink.stop();
 * ```
 */
export interface Sink {
  port: number;
  outDir: string;
  messages(): Promise<SinkMessage[]>;
  waitFor(n: number, timeoutMs?: number): Promise<SinkMessage[]>;
  stop(): Promise<void>;
}

/**
 * Starts aiosmtpd with Debian's python. `mode`: "plain", "starttls" (required) or "tls" (implicit).
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * const certs = await makeTestCerts(dir);
 * const sink = await startSink({ mode: "starttls", dir, certs, auth: { user: "u", password: "p" } });
 * console.log(sink.port);
 * ```
 */
export async function startSink(opts: {
  mode: "plain" | "starttls" | "tls";
  dir: string;
  certs?: TestCerts;
  auth?: { user: string; password: string };
  size?: number;
}): Promise<Sink> {
  const outDir = await Deno.makeTempDir({ dir: opts.dir, prefix: "sink-" });
  const script = `${opts.dir}/smtp_sink.py`;
  await Deno.writeTextFile(script, SINK_PY);
  const cfg = {
    mode: opts.mode,
    outdir: outDir,
    cert: opts.certs?.certFile,
    key: opts.certs?.keyFile,
    auth: opts.auth,
    size: opts.size,
  };
  const child = new Deno.Command(SYSTEM_PYTHON, {
    args: [script, JSON.stringify(cfg)],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  for (let i = 0; i < 100 && !text.includes("\n"); i++) {
    const r = await reader.read();
    if (r.done) break;
    text += new TextDecoder().decode(r.value);
  }
  reader.releaseLock();
  const m = /PORT (\d+)/.exec(text);
  if (!m) {
    await child.stdin.close();
    await child.stdout.cancel();
    await child.status;
    throw new Error(`aiosmtpd did not start: ${text}`);
  }
  const messages = async (): Promise<SinkMessage[]> => {
    const names: string[] = [];
    for await (const e of Deno.readDir(outDir)) if (e.name.endsWith(".json")) names.push(e.name);
    names.sort();
    const out: SinkMessage[] = [];
    for (const n of names) {
      const info = JSON.parse(await Deno.readTextFile(`${outDir}/${n}`));
      info.raw = await Deno.readFile(`${outDir}/${n.replace(/\.json$/, ".eml")}`);
      out.push(info);
    }
    return out;
  };
  return {
    port: Number(m[1]),
    outDir,
    messages,
    async waitFor(n, timeoutMs = 20_000) {
      for (let waited = 0; waited < timeoutMs; waited += 50) {
        const got = await messages();
        if (got.length >= n) return got;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`The SMTP sink received ${(await messages()).length} message(s), expected ${n}.`);
    },
    async stop() {
      await child.stdin.close();
      await child.stdout.cancel();
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await child.status;
      clearTimeout(timer);
    },
  };
}
