/**
 * An FTP server in a child process, for tests that need their own file-descriptor limit
 * (`bash -c "ulimit -n 128; exec deno run ..."`). It prints one JSON line
 * `{ port, implicitPort, certPem, root }` when listening, then answers stdin lines: `check` prints
 * `{ accepting }` after a self-check, `mem` prints `Deno.memoryUsage()`; end of stdin closes the server and exits.
 *
 * Options come as one JSON argument (merged over the defaults; `tls: true` turns on an implicit FTPS port).
 *
 * @module
 */

import { hashPassword } from "../../src/config/password.ts";
import { Accounts } from "../../src/ftp/accounts.ts";
import { FULL_ACCESS } from "../../src/ftp/ftp_file_system.ts";
import { defaultFtpServerOptions, FtpServer } from "../../src/ftp/ftp_server.ts";
import { defaultFtpTlsOptions } from "../../src/ftp/ftps.ts";
import { createSelfSignedCertificate, writeCertificateFiles } from "../../src/net/certificate.ts";
import { LineReader } from "../../src/net/line_reader.ts";

// Like the daemon (which listens for SIGTERM and SIGHUP from the start): Deno sets up signal handling on the first
// listener, which needs a descriptor, and panics when that happens while the process is out of them.
Deno.addSignalListener("SIGHUP", () => {});

const extra = JSON.parse(Deno.args[0] ?? "{}") as Record<string, unknown> & { tls?: boolean };
const base = await Deno.makeTempDir({ prefix: "outpost_ftp_child_" });
const root = `${base}/root`;
await Deno.mkdir(root);
const accounts = new Accounts({
  users: [{ name: "alice", passwordHash: await hashPassword("secret", 1000), root, perms: FULL_ACCESS }],
  anonymous: null,
});
const { tls: wantTls, ...rest } = extra;
let certPem = "";
let tls = undefined;
if (wantTls) {
  const pair = await createSelfSignedCertificate({ hostname: "outpost-test" });
  certPem = pair.certPem;
  const { certPath, keyPath } = await writeCertificateFiles(base, pair);
  tls = {
    ...defaultFtpTlsOptions(),
    mode: "optional" as const,
    certPath,
    keyPath,
    certDir: base,
    implicitPort: 0,
  };
}
const server = new FtpServer({
  ...defaultFtpServerOptions(accounts),
  hostname: "127.0.0.1",
  port: 0,
  loginFailDelayMs: 10,
  tls,
  ...rest,
});
await server.listen();
console.log(JSON.stringify({ port: server.port, implicitPort: server.implicitPort, certPem, root }));
const reader = new LineReader(Deno.stdin, { maxLineLength: 1024 });
for (let i = 0; i < 100_000; i++) {
  const line = await reader.readLine();
  if (line === null) break;
  if (line === "check") console.log(JSON.stringify({ accepting: await server.checkAccepting() }));
  if (line === "mem") console.log(JSON.stringify(Deno.memoryUsage()));
}
await server.close();
await Deno.remove(base, { recursive: true });
