/**
 * The outpost FTP server as the benchmark runs it: one `FtpServer` on 127.0.0.1 (kernel-chosen port) with one
 * user who has full access to ROOT, started as its own `deno run` process so /proc shows only the server.
 *
 * Usage: deno run --allow-all --v8-flags=--expose-gc,--trace-gc scripts/bench/outpost_ftp_server.ts ROOT USER HASH
 *
 * Prints `PORT <n>` when listening. Commands on stdin, one per line, each answered by one `BENCH {json}` line:
 * - `mem`: `Deno.memoryUsage()` as it is;
 * - `gcmem`: the same after a full garbage collection (needs `--expose-gc`).
 * Closing stdin or SIGTERM stops the server. Session and login limits are raised (1000 in total and per address) because
 * every benchmark client comes from 127.0.0.1; all other options are the defaults (env
 * `OUTPOST_BENCH_TRANSFER_BUFFER=65536` sets another transfer buffer size, for experiments).
 *
 * @module
 */

import { Accounts } from "../../src/ftp/accounts.ts";
import { FULL_ACCESS } from "../../src/ftp/ftp_file_system.ts";
import { defaultFtpServerOptions, FtpServer } from "../../src/ftp/ftp_server.ts";
import { LineReader } from "../../src/net/line_reader.ts";

const [root, user, hash] = Deno.args;
if (!root || !user || !hash) {
  console.error("Usage: outpost_ftp_server.ts ROOT USER PASSWORD_HASH");
  Deno.exit(64);
}
const opts = defaultFtpServerOptions(
  new Accounts({ users: [{ name: user, passwordHash: hash, root, perms: FULL_ACCESS }], anonymous: null }),
);
opts.hostname = "127.0.0.1";
opts.port = 0;
opts.maxSessions = 1000;
opts.maxSessionsPerIp = 1000;
// Every client logs in from 127.0.0.1 at once (rows 4 and 5): the per-address login limits are raised too.
opts.maxUnauthenticated = 1000;
opts.maxUnauthenticatedPerIp = 1000;
// Passive ports outside Linux's ephemeral range (32768-60999), as a board behind NAT would configure them: the
// leak check's 10,000 sessions would otherwise compete with clients for ephemeral ports.
opts.passive = { ...opts.passive, portMin: 20000, portMax: 20999 };
// For experiments only (the bench leaves it unset): another transfer buffer size, in bytes.
const bufferSize = Number(Deno.env.get("OUTPOST_BENCH_TRANSFER_BUFFER") ?? "0");
if (bufferSize > 0) opts.transferBufferSize = bufferSize;
// For the STOR comparison without fsync (vsftpd and pyftpdlib never sync): OUTPOST_BENCH_SYNC_UPLOADS=0.
if (Deno.env.get("OUTPOST_BENCH_SYNC_UPLOADS") === "0") opts.syncUploads = false;
// For the login-storm measurement (scripts/bench_login_storm.ts): attackers that are never banned, and the
// password-check gate size to compare.
const maxFailures = Number(Deno.env.get("OUTPOST_BENCH_MAX_LOGIN_FAILURES") ?? "0");
if (maxFailures > 0) opts.maxLoginFailures = maxFailures;
const checks = Number(Deno.env.get("OUTPOST_BENCH_PASSWORD_CHECKS") ?? "0");
if (checks > 0) opts.maxPasswordChecks = checks;
const server = new FtpServer(opts);
await server.listen();
console.log(`PORT ${server.port}`);

const gc = (globalThis as { gc?: () => void }).gc;
let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.close();
  Deno.exit(0);
}
Deno.addSignalListener("SIGTERM", () => void stop());

const reader = new LineReader(Deno.stdin, { maxLineLength: 64 });
for (let line = await reader.readLine(); line !== null; line = await reader.readLine()) {
  if (line === "gcmem" && gc) {
    gc();
    gc();
  }
  if (line === "mem" || line === "gcmem") {
    console.log(`BENCH ${JSON.stringify({ ...Deno.memoryUsage(), sessions: server.sessionCount })}`);
  }
}
await stop();
