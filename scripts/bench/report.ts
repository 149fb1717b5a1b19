/**
 * The benchmark's one table (absolute figures and outpost/peer ratios per row) and the issue 7 targets with
 * PASS/MISS, as Markdown.
 *
 * @module
 */

import type { MachineInfo } from "./proc_stats.ts";
import type { Results } from "./results.ts";

type Format = "mbps" | "cpu" | "rate" | "bytes" | "kb" | "count" | "ms" | "mib";

/** One row of the table. */
export interface RowDef {
  key: string;
  /** The row number. */
  n: string;
  label: string;
  format: Format;
  /** Programs compared in this row, outpost first. */
  programs: string[];
}

const FTP = ["outpost", "vsftpd", "pyftpdlib"];

/**
 * The rows, in the order.
 *
 * @example
 * ```ts
 * const rows = rowDefs({ size: "1 GiB", concurrent: 100, idle: 300, leak: 10000, mails: 200 });
 * console.log(rows.map((r) => r.label).join("\n"));
 * ```
 */
export function rowDefs(
  p: { size: string; concurrent: number; idle: number; leak: number; mails: number },
): RowDef[] {
  return [
    { key: "retr_mbps", n: "1", label: `RETR ${p.size}, MB/s (median)`, format: "mbps", programs: FTP },
    { key: "stor_mbps", n: "1", label: `STOR ${p.size}, MB/s (median)`, format: "mbps", programs: FTP },
    { key: "retr_cpu", n: "2", label: "RETR server CPU-s per GiB", format: "cpu", programs: FTP },
    { key: "stor_cpu", n: "2", label: "STOR server CPU-s per GiB", format: "cpu", programs: FTP },
    { key: "small_fps", n: "3", label: "lftp mirror 2,000 × 4 KiB, files/s", format: "rate", programs: FTP },
    {
      key: "conc_mbps",
      n: "4",
      label: `${p.concurrent} × RETR 8 MiB at once, aggregate MB/s`,
      format: "mbps",
      programs: FTP,
    },
    {
      key: "conc_peak",
      n: "4",
      label: `${p.concurrent} × RETR: server peak memory, MB`,
      format: "bytes",
      programs: FTP,
    },
    {
      key: "conc_peak_delta",
      n: "4",
      label: `${p.concurrent} × RETR: peak RSS minus RSS just before, MB`,
      format: "bytes",
      programs: FTP,
    },
    {
      key: "idle_pss",
      n: "5",
      label: `${p.idle} idle sessions: total PSS, MB`,
      format: "bytes",
      programs: FTP,
    },
    {
      key: "idle_per_session",
      n: "5",
      label: "memory per added idle session, KB",
      format: "kb",
      programs: FTP,
    },
    {
      key: "idle_per_session_warm",
      n: "5",
      label: "… same, second batch after the first closed (warm), KB",
      format: "kb",
      programs: FTP,
    },
    {
      key: "idle_heap_per_session",
      n: "5",
      label: "V8 heap used per idle session (after full GC), KB",
      format: "kb",
      programs: ["outpost"],
    },
    { key: "idle_rss", n: "6", label: "idle RSS after start, MB", format: "bytes", programs: FTP },
    {
      key: "idle_anon",
      n: "6",
      label: "… of which private (RssAnon; the rest is shared code), MB",
      format: "bytes",
      programs: FTP,
    },
    {
      key: "idle_rss_daemon",
      n: "6",
      label: "idle RSS of `outpost serve` (FTP+mail+alerts), MB",
      format: "bytes",
      programs: ["outpost"],
    },
    {
      key: "idle_anon_daemon",
      n: "6",
      label: "… of which private (RssAnon), MB",
      format: "bytes",
      programs: ["outpost"],
    },
    { key: "leak_rss", n: "6", label: `RSS after ${p.leak} sessions, MB`, format: "bytes", programs: FTP },
    {
      key: "leak_heap",
      n: "6",
      label: `V8 heap growth, 100 → ${p.leak} sessions, MiB`,
      format: "mib",
      programs: ["outpost"],
    },
    {
      key: "retr_gcs",
      n: "7",
      label: `GCs during one RETR of ${p.size}`,
      format: "count",
      programs: ["outpost"],
    },
    {
      key: "mail_plain",
      n: "8",
      label: `${p.mails} mails, plain, msgs/s: client library`,
      format: "rate",
      programs: ["outpost", "msmtp"],
    },
    {
      key: "mail_plain_proc",
      n: "8",
      label: `${p.mails} mails, plain, msgs/s: one process each`,
      format: "rate",
      programs: ["outpost", "msmtp"],
    },
    {
      key: "mail_tls",
      n: "8",
      label: `${p.mails} mails, STARTTLS, msgs/s: client library`,
      format: "rate",
      programs: ["outpost", "msmtp"],
    },
    {
      key: "mail_tls_proc",
      n: "8",
      label: `${p.mails} mails, STARTTLS, msgs/s: one process each`,
      format: "rate",
      programs: ["outpost", "msmtp"],
    },
    {
      key: "sendmail_ms",
      n: "9",
      label: "`sendmail --now` start-to-exit, ms (median)",
      format: "ms",
      programs: ["outpost", "msmtp"],
    },
    {
      key: "sendmail_rss",
      n: "9",
      label: "`sendmail --now` peak RSS, MB",
      format: "bytes",
      programs: ["outpost", "msmtp"],
    },
    {
      key: "sendmail_queue_ms",
      n: "9",
      label: "`outpost sendmail` (queue only) start-to-exit, ms",
      format: "ms",
      programs: ["outpost"],
    },
    {
      key: "sendmail_queue_rss",
      n: "9",
      label: "`outpost sendmail` (queue only) peak RSS, MB",
      format: "bytes",
      programs: ["outpost"],
    },
    {
      key: "alert_ms",
      n: "10",
      label: "threshold crossed → alert accepted by sink, ms (median / max)",
      format: "ms",
      programs: ["outpost"],
    },
  ];
}

function fmt(v: number, f: Format): string {
  switch (f) {
    case "mbps":
    case "rate":
      return v >= 100 ? v.toFixed(0) : v.toFixed(1);
    case "cpu":
      return v.toFixed(2);
    case "bytes":
      return (v / 1e6).toFixed(1);
    case "kb":
      return (v / 1e3).toFixed(1);
    case "mib":
      return (v / 1024 ** 2).toFixed(2);
    case "count":
      return String(Math.round(v));
    case "ms":
      return v.toFixed(0);
  }
}

/**
 * The table, as Markdown: one line per row that has any figure.
 *
 * @example
 * ```ts
 * import { Results } from "./results.ts";
 *
 * const results = new Results(); // filled by the bench runs
 * const params = { size: "1 GiB", concurrent: 100, idle: 300, leak: 10000, mails: 200 };
 * console.log(renderTable(rowDefs(params), results));
 * ```
 */
export function renderTable(rows: RowDef[], results: Results): string {
  const out = [
    "| # | measure | outpost | vsftpd | pyftpdlib | msmtp | outpost / peer | load 1m |",
    "|---|---|---:|---:|---:|---:|---|---:|",
  ];
  for (const row of rows) {
    const cells: Record<string, string> = {};
    const ratios: string[] = [];
    const o = results.get(row.key, "outpost");
    let load = o?.load ?? NaN;
    let any = false;
    for (const p of ["outpost", "vsftpd", "pyftpdlib", "msmtp"]) {
      const f = results.get(row.key, p);
      if (!row.programs.includes(p)) {
        cells[p] = "";
        continue;
      }
      if (!f) {
        cells[p] = "–";
        continue;
      }
      any = true;
      if (Number.isNaN(load)) load = f.load;
      cells[p] = row.key === "alert_ms" && f.runs
        ? `${fmt(f.value, row.format)} / ${fmt(Math.max(...f.runs), row.format)}`
        : fmt(f.value, row.format);
      if (p !== "outpost" && o && f.value !== 0) ratios.push(`${(o.value / f.value).toFixed(2)}× ${p}`);
    }
    if (!any) continue;
    out.push(
      `| ${row.n} | ${row.label} | ${cells.outpost} | ${cells.vsftpd} | ${cells.pyftpdlib} | ${cells.msmtp} | ${
        ratios.join(", ")
      } | ${Number.isNaN(load) ? "" : load.toFixed(2)} |`,
    );
  }
  return out.join("\n");
}

/** One target of issue 7 and how it came out. */
export interface TargetOutcome {
  target: string;
  measured: string;
  verdict: "PASS" | "MISS" | "n/a";
}

/**
 * Checks the issue 7 targets against the figures; a target whose figures are missing is "n/a".
 *
 * @example
 * ```ts
 * import { Results } from "./results.ts";
 *
 * const results = new Results(); // filled by the bench runs
 * for (const t of checkTargets(results, { alertIntervalMs: 1000 })) console.log(t.verdict, t.target);
 * ```
 */
export function checkTargets(results: Results, p: { alertIntervalMs: number }): TargetOutcome[] {
  const v = (row: string, prog: string) => results.get(row, prog)?.value;
  const out: TargetOutcome[] = [];
  const ratio = (target: string, row: string, op: "ge" | "le", limit: number, peers: string[]) => {
    const o = v(row, "outpost");
    const ps = peers.map((x) => v(row, x)).filter((x): x is number => x !== undefined);
    if (o === undefined || ps.length !== peers.length) {
      out.push({ target, measured: "not measured", verdict: "n/a" });
      return;
    }
    const ref = op === "ge" ? Math.max(...ps) : Math.min(...ps);
    const r = o / ref;
    out.push({
      target,
      measured: `${r.toFixed(2)}×`,
      verdict: (op === "ge" ? r >= limit : r <= limit) ? "PASS" : "MISS",
    });
  };
  const abs = (target: string, value: number | undefined, limit: number, shown: (x: number) => string) => {
    if (value === undefined) out.push({ target, measured: "not measured", verdict: "n/a" });
    else out.push({ target, measured: shown(value), verdict: value <= limit ? "PASS" : "MISS" });
  };
  ratio("RETR throughput ≥ 0.9× vsftpd", "retr_mbps", "ge", 0.9, ["vsftpd"]);
  ratio("STOR throughput ≥ 0.9× vsftpd", "stor_mbps", "ge", 0.9, ["vsftpd"]);
  ratio("RETR CPU-s per GiB ≤ 1.5× vsftpd", "retr_cpu", "le", 1.5, ["vsftpd"]);
  ratio("STOR CPU-s per GiB ≤ 1.5× vsftpd", "stor_cpu", "le", 1.5, ["vsftpd"]);
  ratio("small files ≥ 1.0× the better of vsftpd and pyftpdlib", "small_fps", "ge", 1.0, [
    "vsftpd",
    "pyftpdlib",
  ]);
  ratio(
    "concurrent aggregate ≥ 1.0× the better of vsftpd and pyftpdlib",
    "conc_mbps",
    "ge",
    1.0,
    ["vsftpd", "pyftpdlib"],
  );
  ratio("idle sessions: total PSS ≤ 0.5× vsftpd", "idle_pss", "le", 0.5, ["vsftpd"]);
  abs(
    "≤ 10 KB RSS per added idle session",
    v("idle_per_session", "outpost"),
    10_000,
    (x) => `${(x / 1e3).toFixed(1)} KB`,
  );
  abs("idle RSS ≤ 40 MB (FTP server)", v("idle_rss", "outpost"), 40e6, (x) => `${(x / 1e6).toFixed(1)} MB`);
  abs(
    "idle RSS ≤ 40 MB (`outpost serve`)",
    v("idle_rss_daemon", "outpost"),
    40e6,
    (x) => `${(x / 1e6).toFixed(1)} MB`,
  );
  abs(
    "heap after 10,000 sessions within 2 MB of after 100",
    v("leak_heap", "outpost"),
    2 * 1024 ** 2,
    (x) => `${(x / 1024 ** 2).toFixed(2)} MiB`,
  );
  const idle = v("idle_rss", "outpost");
  const peak = v("conc_peak", "outpost");
  abs(
    "100 concurrent: peak RSS ≤ idle RSS after start + 30 MB",
    peak !== undefined && idle !== undefined ? peak - idle : undefined,
    30e6,
    (x) => `+${(x / 1e6).toFixed(1)} MB`,
  );
  abs(
    "100 concurrent: peak RSS ≤ RSS just before the burst + 30 MB",
    v("conc_peak_delta", "outpost"),
    30e6,
    (x) => `+${(x / 1e6).toFixed(1)} MB`,
  );
  const alert = results.get("alert_ms", "outpost");
  abs(
    `alert latency ≤ poll interval + 200 ms (${p.alertIntervalMs + 200} ms), worst trial`,
    alert?.runs ? Math.max(...alert.runs) : alert?.value,
    p.alertIntervalMs + 200,
    (x) => `${x.toFixed(0)} ms`,
  );
  return out;
}

/**
 * The whole report: header with the machine, the table, the targets, notes and skips.
 *
 * @example
 * ```ts
 * import { machineInfo } from "./proc_stats.ts";
 * import { Results } from "./results.ts";
 *
 * const results = new Results(); // filled by the bench runs
 * const rows = rowDefs({ size: "1 GiB", concurrent: 100, idle: 300, leak: 10000, mails: 200 });
 * const md = renderReport({
 *   date: new Date().toISOString().slice(0, 10),
 *   command: "deno task bench",
 *   machine: await machineInfo(),
 *   freeM: "",
 *   seconds: 600,
 *   rows,
 *   results,
 *   targets: checkTargets(results, { alertIntervalMs: 1000 }),
 * });
 * await Deno.writeTextFile("BENCH.md", md);
 * ```
 */
export function renderReport(r: {
  date: string;
  command: string;
  machine: MachineInfo;
  freeM: string;
  seconds: number;
  rows: RowDef[];
  results: Results;
  targets: TargetOutcome[];
}): string {
  const m = r.machine;
  const lines = [
    `# outpost benchmark, ${r.date}`,
    "",
    `Command: \`${r.command}\` (took ${Math.round(r.seconds)} s)`,
    "",
    `Machine: ${m.cpus} CPUs (\`nproc\`), ${m.cpuModel}, ${m.memTotalMb} MB RAM, kernel ${m.kernel}, ` +
    `Deno ${m.deno}; load average at start ${m.loadavg} (shared machine).`,
    "",
    "```",
    r.freeM.trimEnd(),
    "```",
    "",
    "All on loopback, one program at a time, same clients (curl, lftp, the bench's own FTP client) and files. " +
    "MB = 10^6 bytes. Ratios are outpost / peer.",
    "",
    renderTable(r.rows, r.results),
    "",
    "## Targets (issue 7)",
    "",
    "| target | measured | result |",
    "|---|---|---|",
    ...r.targets.map((t) => `| ${t.target} | ${t.measured} | ${t.verdict} |`),
  ];
  if (r.results.notes.length) lines.push("", "## Notes", "", ...r.results.notes.map((n) => `- ${n}`));
  if (r.results.skipped.length) lines.push("", "## Skipped", "", ...r.results.skipped.map((n) => `- ${n}`));
  return lines.join("\n") + "\n";
}
