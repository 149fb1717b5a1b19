/**
 * A failed-login storm against the outpost FTP server (own process, the benchmark's server): a legitimate
 * client's login time and download speed, first alone, then while attackers from other loopback addresses
 * (127.0.0.2 ...) keep sending wrong passwords as fast as the server answers. The attackers are never banned
 * (`OUTPOST_BENCH_MAX_LOGIN_FAILURES`), so only the password-check gate stands between them and the CPU; the
 * password hash has the real cost (`hashPassword` default iterations).
 *
 * Usage: deno run --allow-all scripts/bench_login_storm.ts [--attackers 150] [--checks 2] [--size-mb 256]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hashPassword } from "../src/config/password.ts";
import { BenchFtpClient } from "./bench/ftp_client.ts";

const ATTACKER = `
import socket, sys, threading, time
port, n, stop_after = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.time() + stop_after
tries = [0]
def attack(i):
    src = "127.0.0.%d" % (2 + i % 200)
    while time.time() < end:
        try:
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(30)
            s.connect(("127.0.0.1", port))
            f = s.makefile("rb")
            if not f.readline().startswith(b"220"):
                s.close(); time.sleep(0.2); continue
            while time.time() < end:
                s.sendall(b"USER alice\\r\\n"); f.readline()
                s.sendall(b"PASS wrong\\r\\n")
                r = f.readline()
                tries[0] += 1
                if not r.startswith(b"530"):
                    break
            s.close()
        except Exception:
            time.sleep(0.1)
threads = [threading.Thread(target=attack, args=(i,), daemon=True) for i in range(n)]
for t in threads: t.start()
print("started", flush=True)
time.sleep(stop_after)
print("tries", tries[0], flush=True)
`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function measure(port: number, buf: Uint8Array): Promise<{ loginMs: number; mbps: number }> {
  const logins: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const c = await BenchFtpClient.login(port, "alice", "secret");
    logins.push(performance.now() - t0);
    c.close();
  }
  const c = await BenchFtpClient.login(port, "alice", "secret");
  try {
    const t0 = performance.now();
    const bytes = await c.retr("big.bin", buf);
    return { loginMs: median(logins), mbps: bytes / 1e6 / ((performance.now() - t0) / 1000) };
  } finally {
    c.close();
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      attackers: { type: "string", default: "150" },
      checks: { type: "string", default: "" },
      "size-mb": { type: "string", default: "256" },
    },
  });
  const root = await Deno.makeTempDir({ prefix: "outpost_bench_storm_" });
  const file = await Deno.open(`${root}/big.bin`, { write: true, create: true });
  const chunk = new Uint8Array(1 << 20).fill(7);
  for (let i = 0; i < Number(values["size-mb"]); i++) await file.write(chunk);
  file.close();
  const script = new URL("./bench/outpost_ftp_server.ts", import.meta.url).pathname;
  const env: Record<string, string> = { OUTPOST_LOG: "off", OUTPOST_BENCH_MAX_LOGIN_FAILURES: "1000000" };
  if (values.checks) env.OUTPOST_BENCH_PASSWORD_CHECKS = values.checks;
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, root, "alice", await hashPassword("secret")],
    env,
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = server.stdout.getReader();
  try {
    const first = new TextDecoder().decode((await reader.read()).value);
    const port = Number(/PORT (\d+)/.exec(first)?.[1]);
    const buf = new Uint8Array(1 << 20);
    const alone = await measure(port, buf);
    const storm = new Deno.Command("python3", {
      args: ["-c", ATTACKER, String(port), values.attackers, "60"],
      stdout: "piped",
    }).spawn();
    const out = storm.stdout.getReader();
    await out.read(); // started
    await new Promise((r) => setTimeout(r, 3000));
    const under = await measure(port, buf);
    storm.kill("SIGKILL");
    await storm.status;
    await out.cancel().catch(() => {});
    console.log(`| measure | alone | during ${values.attackers} attackers | ratio |`);
    console.log(`| --- | ---: | ---: | ---: |`);
    console.log(
      `| login, ms (median of 5) | ${alone.loginMs.toFixed(0)} | ${under.loginMs.toFixed(0)} | ${
        (under.loginMs / alone.loginMs).toFixed(2)
      }x |`,
    );
    console.log(
      `| RETR ${values["size-mb"]} MiB, MB/s | ${alone.mbps.toFixed(0)} | ${under.mbps.toFixed(0)} | ${
        (under.mbps / alone.mbps).toFixed(2)
      }x |`,
    );
  } finally {
    await server.stdin.close().catch(() => {});
    await server.status;
    await reader.cancel().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
