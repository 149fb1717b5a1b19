/**
 * FTP rows 1 to 7 of the benchmark, run against one server at a time with the same clients (curl, lftp and the
 * bench's own minimal client) and the same files.
 *
 * @module
 */

import { BenchFtpClient } from "./ftp_client.ts";
import type { BenchFtpServer } from "./ftp_servers.ts";
import { runCommand } from "./child.ts";
import { loadAverage, resetPeakRss, TreeCpu, treeMemory } from "./proc_stats.ts";
import { median, type Results } from "./results.ts";

/** Files every server serves. */
export interface BenchFiles {
  /** The served folder (uploads go to `pub/`). */
  root: string;
  /** Size of `big.bin`, the RETR/STOR file. */
  bigSize: number;
  smallCount: number;
  smallSize: number;
  midSize: number;
}

/** Tunables of the FTP rows. */
export interface FtpRowOptions {
  runs: number;
  concurrent: number;
  idleSessions: number;
  leakSessions: number;
  /** Where lftp mirrors to (emptied after each run). */
  scratch: string;
  log: (line: string) => void;
}

const GIB = 1024 ** 3;
/** outpost's default transfer buffer (src/ftp/transfer.ts TRANSFER_BUFFER_SIZE), for per-chunk figures. */
const TRANSFER_CHUNK = 256 * 1024;
const MIB = 1024 ** 2;

/**
 * Creates the served folder: `big.bin`, `mid.bin` (8 MiB), `small/` (2,000 × 4 KiB), `tiny.txt` and a
 * world-writable `pub/`. Written through one reused buffer.
 *
 * @example
 * ```ts
 * const files = await makeBenchFiles("/tmp/bench/root", 1024 ** 3);
 * console.log(files);
 * ```
 */
export async function makeBenchFiles(root: string, bigSize: number): Promise<BenchFiles> {
  const files: BenchFiles = { root, bigSize, smallCount: 2000, smallSize: 4096, midSize: 8 * MIB };
  await Deno.mkdir(`${root}/small`, { recursive: true });
  await Deno.mkdir(`${root}/pub`, { recursive: true });
  await Deno.chmod(root, 0o755);
  await Deno.chmod(`${root}/small`, 0o755);
  await Deno.chmod(`${root}/pub`, 0o777);
  const block = new Uint8Array(MIB);
  for (let off = 0; off < block.length; off += 65536) {
    crypto.getRandomValues(block.subarray(off, off + 65536));
  }
  const write = async (path: string, size: number) => {
    const f = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o644 });
    try {
      for (let left = size; left > 0;) {
        const chunk = block.subarray(0, Math.min(left, block.length));
        let off = 0;
        while (off < chunk.length) off += await f.write(chunk.subarray(off));
        left -= chunk.length;
      }
    } finally {
      f.close();
    }
    await Deno.chmod(path, 0o644);
  };
  await write(`${root}/big.bin`, bigSize);
  await write(`${root}/mid.bin`, files.midSize);
  await write(`${root}/tiny.txt`, 1024);
  for (let i = 0; i < files.smallCount; i++) {
    block[0] = i & 0xff;
    block[1] = i >> 8;
    await write(`${root}/small/f${String(i).padStart(4, "0")}.bin`, files.smallSize);
  }
  return files;
}

async function measureCpu<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; cpu: number }> {
  const cpu = await TreeCpu.start(pid);
  const timer = setInterval(() => void cpu.sample(), 100);
  try {
    const result = await fn();
    return { result, cpu: await cpu.stop() };
  } finally {
    clearInterval(timer);
  }
}

async function curl(args: string[]): Promise<{ bytes: number; seconds: number }> {
  const r = await runCommand("curl", ["-s", "-S", "-o", "/dev/null", ...args]);
  const [bytes, seconds] = r.stdout.trim().split(" ").map(Number);
  if (r.code !== 0) throw new Error(`curl ${args.at(-1)} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return { bytes, seconds };
}

async function gcMark(server: BenchFtpServer): Promise<{ count: number; freedMb: number } | null> {
  if (!server.heap || !server.gcCount || !server.gcFreedMb) return null;
  await server.heap(false); // round trip: every trace line printed before it has been read
  return { count: server.gcCount(), freedMb: server.gcFreedMb() };
}

/**
 * Rows 1, 2 and 7 for RETR: `runs` downloads of big.bin with curl; MB/s, server CPU seconds per GiB and (outpost)
 * garbage collections per run.
 */
export async function benchRetr(
  server: BenchFtpServer,
  files: BenchFiles,
  opts: FtpRowOptions,
  results: Results,
): Promise<void> {
  const mbps: number[] = [];
  const cpus: number[] = [];
  const gcs: number[] = [];
  const freed: number[] = [];
  const load = await loadAverage();
  for (let i = 0; i < opts.runs; i++) {
    const gc0 = await gcMark(server);
    const { result, cpu } = await measureCpu(
      server.cpuPid,
      () => curl(["-w", "%{size_download} %{time_total}", server.url("big.bin")]),
    );
    const gc1 = await gcMark(server);
    if (result.bytes !== files.bigSize) {
      throw new Error(`RETR from ${server.name} moved ${result.bytes} bytes, expected ${files.bigSize}.`);
    }
    mbps.push(result.bytes / result.seconds / 1e6);
    cpus.push(cpu / (result.bytes / GIB));
    if (gc0 !== null && gc1 !== null) {
      gcs.push(gc1.count - gc0.count);
      freed.push(gc1.freedMb - gc0.freedMb);
    }
    opts.log(
      `  RETR run ${i + 1}: ${mbps.at(-1)!.toFixed(0)} MB/s, ${cpus.at(-1)!.toFixed(2)} CPU-s/GiB` +
        (gcs.length ? `, ${gcs.at(-1)} GCs freeing ${freed.at(-1)!.toFixed(1)} MB` : ""),
    );
  }
  results.set("retr_mbps", server.name, { value: median(mbps), runs: mbps, load });
  results.set("retr_cpu", server.name, { value: median(cpus), runs: cpus, load });
  if (gcs.length) {
    const heap = await server.heap!(false);
    results.set("retr_gcs", server.name, {
      value: median(gcs),
      runs: gcs,
      load,
      note: `they freed ${median(freed).toFixed(1)} MB (≈ ${
        (median(freed) * 1e6 / (files.bigSize / TRANSFER_CHUNK)).toFixed(0)
      } bytes per 256 KiB chunk); heap used after: ${(heap.heapUsed / MIB).toFixed(1)} MiB`,
    });
  }
}

/** Rows 1 and 2 for STOR: `runs` uploads of big.bin into pub/ with curl (each upload deleted afterwards). */
export async function benchStor(
  server: BenchFtpServer,
  files: BenchFiles,
  opts: FtpRowOptions,
  results: Results,
): Promise<void> {
  const mbps: number[] = [];
  const cpus: number[] = [];
  const load = await loadAverage();
  for (let i = 0; i < opts.runs; i++) {
    const name = `pub/up-${server.name}-${i}.bin`;
    try {
      const { result, cpu } = await measureCpu(
        server.cpuPid,
        () => curl(["-T", `${files.root}/big.bin`, "-w", "%{size_upload} %{time_total}", server.url(name)]),
      );
      const st = await Deno.stat(`${files.root}/${name}`);
      if (result.bytes !== files.bigSize || st.size !== files.bigSize) {
        throw new Error(`STOR to ${server.name} stored ${st.size} bytes, expected ${files.bigSize}.`);
      }
      mbps.push(result.bytes / result.seconds / 1e6);
      cpus.push(cpu / (result.bytes / GIB));
      opts.log(`  STOR run ${i + 1}: ${mbps.at(-1)!.toFixed(0)} MB/s, ${cpus.at(-1)!.toFixed(2)} CPU-s/GiB`);
    } finally {
      await Deno.remove(`${files.root}/${name}`).catch(() => {});
    }
  }
  results.set("stor_mbps", server.name, { value: median(mbps), runs: mbps, load });
  results.set("stor_cpu", server.name, { value: median(cpus), runs: cpus, load });
}

/** Row 3: lftp mirrors small/ (2,000 × 4 KiB) down, `runs` times; files per second. */
export async function benchSmallFiles(
  server: BenchFtpServer,
  files: BenchFiles,
  opts: FtpRowOptions,
  results: Results,
): Promise<void> {
  const rates: number[] = [];
  const load = await loadAverage();
  for (let i = 0; i < opts.runs; i++) {
    const dest = `${opts.scratch}/mirror-${server.name}-${i}`;
    try {
      const script = [
        "set cmd:fail-exit yes",
        "set ftp:ssl-allow no",
        "set net:max-retries 1",
        "set net:timeout 30",
        "set xfer:clobber yes",
        `open -u ${server.user},${server.password} -p ${server.port} ftp://127.0.0.1`,
        `mirror small ${dest}`,
      ].join("; ");
      const r = await runCommand("lftp", ["-c", script]);
      if (r.code !== 0) throw new Error(`lftp mirror from ${server.name} failed: ${r.stderr.trim()}`);
      let n = 0;
      for await (const e of Deno.readDir(dest)) if (e.isFile) n++;
      if (n !== files.smallCount) {
        throw new Error(`lftp mirrored ${n} files from ${server.name}, expected ${files.smallCount}.`);
      }
      rates.push(n / (r.ms / 1000));
      opts.log(`  mirror run ${i + 1}: ${rates.at(-1)!.toFixed(0)} files/s`);
    } finally {
      await Deno.remove(dest, { recursive: true }).catch(() => {});
    }
  }
  results.set("small_fps", server.name, { value: median(rates), runs: rates, load });
}

/**
 * Row 4: `concurrent` curl processes each RETR mid.bin (8 MiB) at once; aggregate MB/s and the server's peak
 * memory (one process: VmHWM after resetting it; vsftpd: the peak of its summed PSS, sampled every 100 ms).
 */
export async function benchConcurrent(
  server: BenchFtpServer,
  files: BenchFiles,
  opts: FtpRowOptions,
  results: Results,
): Promise<void> {
  const load = await loadAverage();
  const before = await treeMemory(server.pid);
  const resetOk = await resetPeakRss(server.pid);
  let peakPss = before.pss;
  let peakProcs = before.processes;
  let sampling = false;
  const timer = setInterval(async () => {
    if (sampling) return;
    sampling = true;
    try {
      const m = await treeMemory(server.pid);
      peakPss = Math.max(peakPss, m.pss);
      peakProcs = Math.max(peakProcs, m.processes);
    } finally {
      sampling = false;
    }
  }, 100);
  const t0 = performance.now();
  let outcomes: { bytes: number; seconds: number }[];
  try {
    outcomes = await Promise.all(
      Array.from(
        { length: opts.concurrent },
        () => curl(["-w", "%{size_download} %{time_total}", server.url("mid.bin")]),
      ),
    );
  } finally {
    clearInterval(timer);
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = await treeMemory(server.pid);
  const total = outcomes.reduce((a, o) => a + o.bytes, 0);
  if (total !== files.midSize * opts.concurrent) {
    throw new Error(`${server.name} sent ${total} bytes to ${opts.concurrent} clients, expected more.`);
  }
  results.set("conc_mbps", server.name, { value: total / seconds / 1e6, load });
  const single = peakProcs === 1 && after.processes === 1 && resetOk;
  if (single) {
    results.set("conc_peak_delta", server.name, {
      value: after.rootHwm - before.rootRss,
      load,
      note: "peak RSS during the burst minus RSS just before it",
    });
  }
  results.set("conc_peak", server.name, {
    value: single ? after.rootHwm : peakPss,
    load,
    note: single
      ? `peak RSS (VmHWM); RSS before ${(before.rootRss / 1e6).toFixed(1)} MB`
      : `peak summed PSS of up to ${peakProcs} processes (sampled); before ${
        (before.pss / 1e6).toFixed(1)
      } MB`,
  });
  opts.log(`  ${opts.concurrent} concurrent: ${(total / seconds / 1e6).toFixed(0)} MB/s aggregate`);
}

/** Row 6, first half: RSS (and PSS) of the freshly started server, after a second of quiet. */
export async function benchIdleRss(server: BenchFtpServer, results: Results): Promise<void> {
  await new Promise((r) => setTimeout(r, 1000));
  const load = await loadAverage();
  const m = await treeMemory(server.pid);
  let note =
    `PSS ${(m.pss / 1e6).toFixed(1)} MB, private (RssAnon) ${
      (m.anon / 1e6).toFixed(1)
    } MB in ${m.processes} ` +
    "process(es)";
  if (server.heap) {
    const h = await server.heap(false);
    note += `; V8 heap used ${(h.heapUsed / MIB).toFixed(1)} MiB`;
    results.set("idle_heap", server.name, { value: h.heapUsed, load });
  }
  results.set("idle_rss", server.name, { value: m.rss, load, note });
  results.set("idle_anon", server.name, { value: m.anon, load });
}

/**
 * Row 5: `idleSessions` logged-in control connections held open by the bench; total PSS of the server tree and
 * memory per added session (one process: RSS; vsftpd: PSS).
 */
export async function benchIdleSessions(
  server: BenchFtpServer,
  opts: FtpRowOptions,
  results: Results,
): Promise<void> {
  const load = await loadAverage();
  const n = opts.idleSessions;
  // Round 1 (cold) is what the target is judged on; round 2 (warm, after round 1's sessions closed) shows what
  // stays per session once the heap and allocator have grown for the first batch of logins.
  for (const round of ["cold", "warm"] as const) {
    if (server.heap) await server.heap(true);
    const before = await treeMemory(server.pid);
    const heapBefore = server.heap ? (await server.heap(true)).heapUsed : 0;
    const clients: BenchFtpClient[] = [];
    try {
      for (let i = 0; i < n; i += 10) {
        const batch = Math.min(10, n - i);
        clients.push(
          ...await Promise.all(
            Array.from(
              { length: batch },
              () => BenchFtpClient.login(server.port, server.user, server.password),
            ),
          ),
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
      const heapAfter = server.heap ? (await server.heap(true)).heapUsed : 0;
      const after = await treeMemory(server.pid);
      const single = after.processes === 1;
      const suffix = round === "cold" ? "" : "_warm";
      results.set(`idle_pss${suffix}`, server.name, {
        value: after.pss,
        load,
        note: `${after.processes} process(es); ${(before.pss / 1e6).toFixed(1)} MB before`,
      });
      results.set(`idle_per_session${suffix}`, server.name, {
        value: single ? (after.rss - before.rss) / n : (after.pss - before.pss) / n,
        load,
        note: single ? "RSS delta / sessions" : "PSS delta / sessions",
      });
      if (server.heap) {
        results.set(`idle_heap_per_session${suffix}`, server.name, {
          value: (heapAfter - heapBefore) / n,
          load,
        });
      }
      opts.log(
        `  ${n} idle sessions (${round}): ${
          (after.pss / 1e6).toFixed(1)
        } MB PSS in ${after.processes} process(es)` +
          `, ${(((single ? after.rss - before.rss : after.pss - before.pss) / n) / 1e3).toFixed(1)} KB each` +
          (server.heap ? `, V8 heap ${((heapAfter - heapBefore) / n / 1e3).toFixed(1)} KB each` : ""),
      );
    } finally {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.close())));
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * Row 6, second half (outpost only): `leakSessions` sequential login/LIST/RETR/QUIT sessions; V8 heap (after a
 * full GC) after the first 100 and after all, and RSS at the end.
 */
export async function benchLeak(
  server: BenchFtpServer,
  opts: FtpRowOptions,
  results: Results,
): Promise<void> {
  if (!server.heap) return;
  const load = await loadAverage();
  const buf = new Uint8Array(65536);
  const session = async () => {
    const c = await BenchFtpClient.login(server.port, server.user, server.password);
    try {
      await c.list(buf);
      if (await c.retr("tiny.txt", buf) !== 1024) throw new Error("RETR tiny.txt returned the wrong size.");
      await c.quit();
    } catch (e) {
      c.close();
      throw e;
    }
  };
  const first = Math.min(100, opts.leakSessions);
  for (let i = 0; i < first; i++) await session();
  const h100 = await server.heap(true);
  const m100 = await treeMemory(server.pid);
  const t0 = performance.now();
  for (let i = first; i < opts.leakSessions; i++) await session();
  const seconds = (performance.now() - t0) / 1000;
  const hEnd = await server.heap(true);
  const m = await treeMemory(server.pid);
  results.set("leak_heap", server.name, {
    value: hEnd.heapUsed - h100.heapUsed,
    load,
    note: `heap after ${first}: ${(h100.heapUsed / MIB).toFixed(2)} MiB, after ${opts.leakSessions}: ${
      (hEnd.heapUsed / MIB).toFixed(2)
    } MiB`,
  });
  results.set("leak_rss", server.name, {
    value: m.rss,
    load,
    note: `RSS after the first ${first}: ${(m100.rss / 1e6).toFixed(1)} MB`,
  });
  opts.log(
    `  ${opts.leakSessions} sessions (${((opts.leakSessions - first) / seconds).toFixed(0)}/s): heap ${
      (h100.heapUsed / MIB).toFixed(2)
    } -> ${(hEnd.heapUsed / MIB).toFixed(2)} MiB, RSS ${(m100.rss / 1e6).toFixed(1)} -> ${
      (m.rss / 1e6).toFixed(1)
    } MB`,
  );
}
