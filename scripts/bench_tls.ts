/**
 * Measures what TLS costs a transfer: moves N MiB over loopback plain (Deno.Conn both ends) and TLS (our
 * server-side {@link TlsConn} sending, Deno's TLS client receiving), each sender with one reused buffer, and
 * prints MB/s and the peak RSS seen while each ran.
 *
 * Usage: `deno run --allow-all scripts/bench_tls.ts [--mib 256] [--buffer-kib 64]`
 *
 * It is also importable: {@link benchTransfers} returns the numbers for the FTP-level benchmark.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createSelfSignedCertificate } from "../src/net/certificate.ts";
import { createServerTlsContext, TlsListener } from "../src/net/tls_server.ts";
import type { ByteConn } from "../src/net/byte_conn.ts";

/** One measured run. */
export interface BenchResult {
  label: string;
  bytes: number;
  ms: number;
  mbPerS: number;
  /** Peak resident set size of this process during the run, in MiB. */
  peakRssMiB: number;
}

/** Samples RSS every 20 ms until stopped; returns the peak. */
function rssSampler(): { stop: () => number } {
  let peak = Deno.memoryUsage().rss;
  const t = setInterval(() => {
    const r = Deno.memoryUsage().rss;
    if (r > peak) peak = r;
  }, 20);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(peak, Deno.memoryUsage().rss) / (1024 * 1024);
    },
  };
}

async function pump(
  sender: ByteConn,
  receiver: ByteConn,
  bytes: number,
  bufSize: number,
  afterSend: () => Promise<void>,
): Promise<number> {
  const sbuf = new Uint8Array(bufSize).fill(0x5a);
  const rbuf = new Uint8Array(bufSize);
  const send = (async () => {
    for (let left = bytes; left > 0;) {
      const n = Math.min(left, sbuf.length);
      let off = 0;
      while (off < n) off += await sender.write(sbuf.subarray(off, n));
      left -= n;
    }
    await afterSend();
  })();
  let got = 0;
  for (;;) {
    const n = await receiver.read(rbuf);
    if (n === null) break;
    got += n;
  }
  await send;
  return got;
}

/**
 * Runs the plain and TLS transfers and returns both results.
 *
 * @example
 * ```ts
 * const [plain, tls] = await benchTransfers(64, 64);
 * console.log(plain.mbPerS, tls.mbPerS);
 * ```
 */
export async function benchTransfers(mib: number, bufKiB: number): Promise<BenchResult[]> {
  const bytes = mib * 1024 * 1024;
  const bufSize = bufKiB * 1024;
  const results: BenchResult[] = [];

  {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port });
    const server = await l.accept();
    const rss = rssSampler();
    const t0 = performance.now();
    const got = await pump(server, client, bytes, bufSize, () => Promise.resolve(server.close()));
    const ms = performance.now() - t0;
    results.push({ label: "plain", bytes: got, ms, mbPerS: got / 1e6 / (ms / 1000), peakRssMiB: rss.stop() });
    client.close();
    l.close();
  }
  {
    const pair = await createSelfSignedCertificate({ hostname: "bench" });
    const ctx = createServerTlsContext({ cert: pair.certPem, key: pair.keyPem });
    const l = new TlsListener({ hostname: "127.0.0.1", port: 0, context: ctx });
    await l.listen();
    const client = await Deno.connectTls({ hostname: "127.0.0.1", port: l.port, caCerts: [pair.certPem] });
    const server = (await l.accept())!;
    const rss = rssSampler();
    const t0 = performance.now();
    const got = await pump(server, client, bytes, bufSize, () => server.shutdown());
    const ms = performance.now() - t0;
    results.push({
      label: `tls (${[server.protocol, server.cipher].filter(Boolean).join(" ")})`,
      bytes: got,
      ms,
      mbPerS: got / 1e6 / (ms / 1000),
      peakRssMiB: rss.stop(),
    });
    client.close();
    await l.close();
  }
  return results;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { mib: { type: "string", default: "256" }, "buffer-kib": { type: "string", default: "64" } },
  });
  const mib = Number(values.mib);
  const bufKiB = Number(values["buffer-kib"]);
  console.log(`Moving ${mib} MiB over loopback with one ${bufKiB} KiB buffer per side...`);
  console.log(`start rss ${(Deno.memoryUsage().rss / 1048576).toFixed(1)} MiB`);
  for (const r of await benchTransfers(mib, bufKiB)) {
    console.log(
      `${r.label.padEnd(48)} ${(r.bytes / 1048576).toFixed(0)} MiB in ${(r.ms / 1000).toFixed(2)} s = ${
        r.mbPerS.toFixed(1)
      } MB/s, peak rss ${r.peakRssMiB.toFixed(1)} MiB`,
    );
  }
}
