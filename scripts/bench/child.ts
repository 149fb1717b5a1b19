/**
 * Child processes of the benchmark (servers, sinks, clients): spawned with piped output read line by line,
 * stopped by their own PID (SIGTERM, then SIGKILL), and all remembered so a failed or interrupted run still
 * stops every one it started.
 *
 * @module
 */

const live = new Set<BenchChild>();

/** Options for {@link BenchChild.spawn}. */
export interface SpawnOptions {
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** Keep stdin open for {@link BenchChild.send} (default: null stdin). */
  stdin?: boolean;
  /** Called for each stdout line, in order. */
  onLine?: (line: string) => void;
}

/**
 * A running child process whose stdout is read line by line.
 *
 * @example
 * ```ts
 * const sink = BenchChild.spawn("/usr/bin/python3", { args: ["smtp_sink.py"], stdin: true });
 * const port = Number((await sink.waitLine(/^PORT (\d+)/))[1]);
 * console.log("sink on port", port);
 * await sink.stop();
 * ```
 */
export class BenchChild {
  readonly process: Deno.ChildProcess;
  readonly name: string;
  stderrTail = "";
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #exited = false;
  readonly #done: Promise<void>;
  readonly #onLine?: (line: string) => void;

  private constructor(cmd: string, opts: SpawnOptions) {
    this.name = cmd.split("/").pop() ?? cmd;
    this.#onLine = opts.onLine;
    this.process = new Deno.Command(cmd, {
      args: opts.args,
      cwd: opts.cwd,
      env: { NO_COLOR: "1", ...opts.env },
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (opts.stdin) this.#writer = this.process.stdin.getWriter();
    live.add(this);
    this.#done = Promise.all([this.#readLines(), this.#readStderr(), this.process.status]).then(() => {
      this.#exited = true;
      live.delete(this);
      this.#wake();
    });
  }

  /** Starts `cmd`. */
  static spawn(cmd: string, opts: SpawnOptions): BenchChild {
    return new BenchChild(cmd, opts);
  }

  /** The child's PID. */
  get pid(): number {
    return this.process.pid;
  }

  #wake(): void {
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }

  async #readLines(): Promise<void> {
    const dec = new TextDecoder();
    let pending = "";
    for await (const chunk of this.process.stdout) {
      pending += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        this.#onLine?.(line);
        this.#lines.push(line);
        if (this.#lines.length > 2000) this.#lines.splice(0, 1000);
      }
      this.#wake();
    }
  }

  async #readStderr(): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of this.process.stderr) {
      this.stderrTail = (this.stderrTail + dec.decode(chunk, { stream: true })).slice(-4000);
    }
  }

  /**
   * Waits for (and consumes) the first stdout line matching `re`; throws after `timeoutMs` or when the child
   * exits first, quoting its stderr.
   */
  async waitLine(re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = 0; i < this.#lines.length; i++) {
        const m = re.exec(this.#lines[i]);
        if (m) {
          this.#lines.splice(0, i + 1);
          return m;
        }
      }
      if (this.#exited) {
        throw new Error(`${this.name} exited before printing ${re}: ${this.stderrTail.trim().slice(-800)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name} did not print ${re} within ${timeoutMs} ms.`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, Math.min(left, 1000));
      });
      clearTimeout(timer);
    }
  }

  /** Writes one line to the child's stdin. */
  async send(line: string): Promise<void> {
    if (!this.#writer) throw new Error(`${this.name} was started without stdin.`);
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /** Closes stdin, sends SIGTERM (SIGKILL after `graceMs`) and waits for the exit. Safe to call twice. */
  async stop(graceMs = 3000): Promise<void> {
    try {
      await this.#writer?.close();
    } catch {
      // Already closed.
    }
    this.#writer = null;
    if (!this.#exited) {
      try {
        this.process.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        this.#done.then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), graceMs)),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        try {
          this.process.kill("SIGKILL");
        } catch {
          // Gone meanwhile.
        }
      }
    }
    await this.#done;
  }
}

/**
 * Stops every child still running (after an error or Ctrl-C).
 *
 * @example
 * ```ts
 * await stopAllChildren();
 * ```
 */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(1000)));
}

/** Result of {@link runCommand}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs a command to completion (stdin from a file or null) and times it.
 *
 * @example
 * ```ts
 * const url = "ftp://127.0.0.1:2121/tiny.txt";
 * const r = await runCommand("curl", ["-s", "-o", "/dev/null", url]);
 * console.log(r.code);
 * ```
 */
export async function runCommand(
  cmd: string,
  args: string[],
  opts: { stdinFile?: string; env?: Record<string, string>; cwd?: string } = {},
): Promise<RunResult> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdin: opts.stdinFile ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdinFile) {
    const f = await Deno.open(opts.stdinFile);
    const w = child.stdin.getWriter();
    try {
      const buf = new Uint8Array(65536);
      for (;;) {
        const n = await f.read(buf);
        if (n === null) break;
        await w.write(buf.slice(0, n));
      }
    } finally {
      f.close();
      await w.close().catch(() => {});
    }
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    ms: performance.now() - t0,
  };
}

/**
 * Finds an executable on PATH (or checks an absolute path); null when missing.
 *
 * @example
 * ```ts
 * const curl = await which("curl");
 * console.log(curl ?? "curl is not installed");
 * ```
 */
export async function which(name: string): Promise<string | null> {
  const candidates = name.includes("/")
    ? [name]
    : (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) => `${d}/${name}`);
  for (const p of candidates) {
    try {
      const st = await Deno.stat(p);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) return p;
    } catch {
      // Not here.
    }
  }
  return null;
}
