/**
 * `deno task test`: every test file in a process of its own, a few at a time.
 *
 * `deno test --parallel` runs all test modules in one process, on separate threads. The FTP server pins the
 * process's working directory for its race-free file operations (a daemon is one process with one JS thread, so
 * that is safe there), but two test modules' servers in one process moved each other's working directory: rare
 * failures such as "550 Permission denied" at the end of an upload. A process per file also keeps environment
 * variables, the umask and signal handlers of one file away from the others.
 *
 * Output: each file's own output once it has ended (never interleaved), then the errors and the names of the
 * failed tests, then Deno's closing line summed over all files (`ok | N passed (M steps) | N failed | N ignored`).
 * Arguments after the options are passed to every `deno test` (e.g. `--filter NAME`).
 *
 * ```sh
 * deno task test                        # all files, as many at a time as there are CPUs (at least 2)
 * deno task test tests/ftp_curl_test.ts # some files
 * OUTPOST_TEST_JOBS=1 deno task test    # one at a time
 * ```
 *
 * @module
 */

/** One file's outcome. */
interface FileResult {
  file: string;
  code: number;
  passed: number;
  steps: number;
  failed: number;
  ignored: number;
  output: string;
  ms: number;
}

const SUMMARY = /^(ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \| (\d+) ignored)?/m;
/** A file that runs longer than this is ended (every network loop in a test is bounded; this is the backstop). */
const FILE_TIMEOUT_MS = 20 * 60_000;

async function testFiles(args: string[]): Promise<string[]> {
  const named = args.filter((a) => a.endsWith(".ts"));
  if (named.length > 0) return named;
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory && e.name !== "fixtures" && e.name !== "helpers") await walk(p);
      else if (e.isFile && /(_test|\.test)\.ts$/.test(e.name)) out.push(p);
    }
  };
  await walk("tests");
  return out.sort();
}

async function runFile(file: string, extra: string[]): Promise<FileResult> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", ...extra, file],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already ended.
    }
  }, FILE_TIMEOUT_MS);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  const output = dec.decode(out.stdout) + dec.decode(out.stderr);
  const m = SUMMARY.exec(plain(output));
  const r: FileResult = {
    file,
    code: out.code,
    passed: m ? Number(m[2]) : 0,
    steps: m?.[3] ? Number(m[3]) : 0,
    failed: m ? Number(m[4]) : 0,
    ignored: m?.[5] ? Number(m[5]) : 0,
    output,
    ms: performance.now() - t0,
  };
  // A file that did not get to its summary (a type error, a crash, the timeout) counts as one failure.
  if (out.code !== 0 && r.failed === 0) r.failed = 1;
  return r;
}

/** The `name => file:line` lines of a file's FAILURES block (or the file itself when there is none). */
function failureNames(r: FileResult): string[] {
  const block = /^ FAILURES *$([\s\S]*?)^(?:ok|FAILED) \|/m.exec(plain(r.output));
  const names = block ? block[1].split("\n").filter((l) => l.includes(" => ")) : [];
  return names.length > 0 ? names : [`${r.file} (did not finish: exit status ${r.code})`];
}

/** Text without ANSI colour codes. */
function plain(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`;
}

async function main(args: string[]): Promise<number> {
  const extra = args.filter((a) => !a.endsWith(".ts"));
  const files = await testFiles(args);
  const jobs = Number(Deno.env.get("OUTPOST_TEST_JOBS")) || Math.max(2, navigator.hardwareConcurrency || 2);
  const t0 = performance.now();
  const results: FileResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const file = files[next++];
      const r = await runFile(file, extra);
      results.push(r);
      const enc = new TextEncoder();
      await Deno.stdout.write(enc.encode(`${r.output.trimEnd()}\n`));
      console.log(`--- ${r.file}: ${r.failed === 0 ? "ok" : "FAILED"} (${duration(r.ms)})\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, worker));
  const sum = (k: "passed" | "steps" | "failed" | "ignored") => results.reduce((n, r) => n + r[k], 0);
  const failed = results.filter((r) => r.failed > 0 || r.code !== 0);
  if (failed.length > 0) {
    console.log("\n ERRORS \n");
    for (const r of failed) {
      // deno-lint-ignore no-control-regex
      const plain = r.output.replace(/\x1b\[[0-9;]*m/g, "");
      const errors = /^ ERRORS *$([\s\S]*?)^ FAILURES *$/m.exec(plain);
      console.log(
        errors ? errors[1].trim() : `${r.file}:\n${plain.trim().split("\n").slice(-30).join("\n")}`,
      );
      console.log("");
    }
    console.log(" FAILURES \n");
    for (const r of failed) for (const n of failureNames(r)) console.log(n);
    console.log("");
  }
  const steps = sum("steps");
  const ignored = sum("ignored");
  console.log(
    `${failed.length === 0 ? "ok" : "FAILED"} | ${sum("passed")} passed${
      steps ? ` (${steps} steps)` : ""
    } | ` +
      `${sum("failed")} failed${ignored ? ` | ${ignored} ignored` : ""} (${
        duration(performance.now() - t0)
      }; ` +
      `${files.length} files, ${jobs} at a time)`,
  );
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
