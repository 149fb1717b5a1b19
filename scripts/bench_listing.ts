/**
 * Memory of big directory listings: the outpost FTP server (as the benchmark runs it, own process, heap capped
 * like the Zero 2 W unit) lists a folder of N empty files with two LISTs at once; prints the server's RSS before,
 * its peak RSS during the listings (VmHWM after a reset) and the listing sizes.
 *
 * Usage: deno run --allow-all scripts/bench_listing.ts [--entries 100000,1000000] [--heap-mb 64]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hashPassword } from "../src/config/password.ts";
import { LineReader } from "../src/net/line_reader.ts";
import { BenchFtpClient } from "./bench/ftp_client.ts";
import { resetPeakRss } from "./bench/proc_stats.ts";

async function statusKb(pid: number, key: string): Promise<number> {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(await Deno.readTextFile(`/proc/${pid}/status`));
  return m ? Number(m[1]) : -1;
}

async function makeEntries(dir: string, n: number): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const empty = new Uint8Array(0);
  for (let i = 0; i < n; i += 512) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 512); j++) {
      batch.push(Deno.writeFile(`${dir}/file_${String(j).padStart(7, "0")}_with_a_longish_name.dat`, empty));
    }
    await Promise.all(batch);
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { entries: { type: "string", default: "100000" }, "heap-mb": { type: "string", default: "64" } },
  });
  const counts = values.entries.split(",").map(Number).filter((n) => n > 0);
  const heapMb = Number(values["heap-mb"]);
  const base = await Deno.makeTempDir({ prefix: "outpost_bench_listing_" });
  const script = new URL("./bench/outpost_ftp_server.ts", import.meta.url).pathname;
  const hash = await hashPassword("bench", 1000);
  console.log(
    `| entries | two LISTs at once: bytes each | server RSS before, MB | peak RSS, MB | heap cap, MB |`,
  );
  console.log(
    `| ------: | ----------------------------: | -------------------: | -----------: | -----------: |`,
  );
  try {
    for (const n of counts) {
      const root = `${base}/root${n}`;
      await makeEntries(root, n);
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          `--v8-flags=--max-old-space-size=${heapMb},--max-semi-space-size=1`,
          script,
          root,
          "bench",
          hash,
        ],
        env: { MALLOC_ARENA_MAX: "2", OUTPOST_LOG: "off" },
        stdin: "piped",
        stdout: "piped",
      }).spawn();
      try {
        const r = child.stdout.getReader();
        let pending = new Uint8Array(0);
        const lines = new LineReader({
          read: async (b: Uint8Array) => {
            if (pending.length === 0) {
              const { value, done } = await r.read();
              if (done) return null;
              pending = value;
            }
            const k = Math.min(b.length, pending.length);
            b.set(pending.subarray(0, k));
            pending = pending.subarray(k);
            return k;
          },
        }, { maxLineLength: 4096 });
        const first = (await lines.readLine()) ?? "";
        const port = Number(/^PORT (\d+)/.exec(first)?.[1]);
        if (!port) throw new Error(`The server did not start: ${first}`);
        const before = await statusKb(child.pid, "VmRSS");
        await resetPeakRss(child.pid);
        const sizes = await Promise.all([0, 1].map(async () => {
          const c = await BenchFtpClient.login(port, "bench", "bench");
          try {
            return await c.list(new Uint8Array(256 << 10));
          } finally {
            c.close();
          }
        }));
        const peak = await statusKb(child.pid, "VmHWM");
        console.log(
          `| ${n} | ${sizes.join(", ")} | ${(before / 1024).toFixed(1)} | ${
            (peak / 1024).toFixed(1)
          } | ${heapMb} |`,
        );
      } finally {
        await child.stdin.close().catch(() => {});
        await child.status;
      }
      await Deno.remove(root, { recursive: true });
    }
  } finally {
    await Deno.remove(base, { recursive: true }).catch(() => {});
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
