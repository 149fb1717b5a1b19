/**
 * What the benchmark reads from /proc: the process tree of a server, its CPU time (children included), RSS, PSS
 * and peak RSS, plus a description of the machine and its load.
 *
 * @module
 */

/** Clock ticks per second of /proc/PID/stat times (USER_HZ; 100 on every Linux the bench runs on). */
export const CLOCK_TICKS = 100;

/** One line of /proc/PID/stat, the fields the bench uses. */
export interface ProcStat {
  pid: number;
  ppid: number;
  state: string;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
  /** Start time since boot in clock ticks: with the PID it identifies one process. */
  start: number;
}

/**
 * Reads /proc/PID/stat; null when the process is gone.
 *
 * @example
 * ```ts
 * const st = await readStat(Deno.pid);
 * console.log(st?.ticks, "ticks of CPU so far");
 * ```
 */
export async function readStat(pid: number): Promise<ProcStat | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); field n is rest[n - 3].
  const f = (n: number) => Number(rest[n - 3]);
  return { pid, ppid: f(4), state: rest[0], ticks: f(14) + f(15) + f(16) + f(17), start: f(22) };
}

/**
 * The PIDs of `root` and all its live descendants (zombies included), from one scan of /proc.
 *
 * @example
 * ```ts
 * const server = new Deno.Command("sleep", { args: ["1"] }).spawn();
 * const tree = await processTree(server.pid);
 * console.log(tree.map((p) => p.pid));
 * ```
 */
export async function processTree(root: number): Promise<ProcStat[]> {
  const all: ProcStat[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const st = await readStat(Number(e.name));
    if (st) all.push(st);
  }
  const children = new Map<number, ProcStat[]>();
  for (const st of all) {
    const list = children.get(st.ppid);
    if (list) list.push(st);
    else children.set(st.ppid, [st]);
  }
  const rootStat = all.find((s) => s.pid === root);
  if (!rootStat) return [];
  const out: ProcStat[] = [];
  const todo = [rootStat];
  while (todo.length > 0 && out.length < 100_000) {
    const s = todo.pop()!;
    out.push(s);
    for (const c of children.get(s.pid) ?? []) todo.push(c);
  }
  return out;
}

/**
 * CPU time of a server's process tree over an interval. Call {@link TreeCpu.sample} now and then while the
 * work runs (vsftpd forks per session): a process seen once is still counted at the end if it became a zombie
 * that nobody reaps, and a reaped one is counted through its parent's cutime/cstime.
 *
 * @example
 * ```ts
 * declare const pid: number; // the server under test
 * const cpu = await TreeCpu.start(pid);
 * const timer = setInterval(() => cpu.sample(), 100);
 * // ... work ...
 * clearInterval(timer);
 * const seconds = await cpu.stop();
 * console.log(seconds, "CPU-s");
 * ```
 */
export class TreeCpu {
  readonly #root: number;
  readonly #seen = new Map<string, { pid: number; start: number }>();
  #startTicks = 0;
  #sampling: Promise<void> | null = null;

  private constructor(root: number) {
    this.#root = root;
  }

  /** Starts measuring the tree under `root`. */
  static async start(root: number): Promise<TreeCpu> {
    const t = new TreeCpu(root);
    const tree = await processTree(root);
    for (const s of tree) t.#seen.set(`${s.pid}:${s.start}`, { pid: s.pid, start: s.start });
    t.#startTicks = tree.reduce((a, s) => a + s.ticks, 0);
    return t;
  }

  /** Records the processes alive now (skipped when the previous sample is still running). */
  sample(): Promise<void> {
    if (this.#sampling) return this.#sampling;
    this.#sampling = processTree(this.#root).then((tree) => {
      for (const s of tree) this.#seen.set(`${s.pid}:${s.start}`, { pid: s.pid, start: s.start });
    }).finally(() => this.#sampling = null);
    return this.#sampling;
  }

  /** CPU seconds used by the tree since {@link TreeCpu.start}. */
  async stop(): Promise<number> {
    await this.sample();
    let ticks = 0;
    for (const { pid, start } of this.#seen.values()) {
      const st = await readStat(pid);
      if (st && st.start === start) ticks += st.ticks;
    }
    return (ticks - this.#startTicks) / CLOCK_TICKS;
  }
}

/** Memory of one process in bytes. */
export interface ProcMemory {
  rss: number;
  /** Peak RSS (VmHWM) since start or the last {@link resetPeakRss}. */
  hwm: number;
  /** Proportional set size from smaps_rollup (shared pages divided among the processes sharing them). */
  pss: number;
  /**
   * Private anonymous memory (RssAnon): heap, stacks, buffers. The rest of RSS is mostly file-backed code pages
   * (for Deno, its ~90 MB binary), shared and dropped by the kernel under memory pressure.
   */
  anon: number;
}

function kbField(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * RSS, peak RSS and PSS of one process; zeros when it is gone (or a zombie).
 *
 * @example
 * ```ts
 * declare const pid: number;
 * const { rss, pss } = await processMemory(pid);
 * console.log(rss, pss);
 * ```
 */
export async function processMemory(pid: number): Promise<ProcMemory> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    let pss = 0;
    try {
      pss = kbField(await Deno.readTextFile(`/proc/${pid}/smaps_rollup`), "Pss");
    } catch {
      // Zombies and kernels without smaps_rollup have no PSS.
    }
    return {
      rss: kbField(status, "VmRSS"),
      hwm: kbField(status, "VmHWM"),
      pss,
      anon: kbField(status, "RssAnon"),
    };
  } catch {
    return { rss: 0, hwm: 0, pss: 0, anon: 0 };
  }
}

/** Memory of a whole server tree: summed RSS and PSS, the root's peak RSS, and how many processes. */
export interface TreeMemory {
  rss: number;
  pss: number;
  /** Summed private anonymous memory (RssAnon). */
  anon: number;
  rootRss: number;
  rootHwm: number;
  processes: number;
}

/**
 * Sums RSS and PSS over `root` and its descendants (vsftpd: a listener plus two processes per session).
 *
 * @example
 * ```ts
 * declare const pid: number;
 * const m = await treeMemory(pid);
 * console.log(m.pss / 1e6, "MB in", m.processes, "processes");
 * ```
 */
export async function treeMemory(root: number): Promise<TreeMemory> {
  const tree = (await processTree(root)).filter((s) => s.state !== "Z");
  let rss = 0;
  let pss = 0;
  let anon = 0;
  let rootRss = 0;
  let rootHwm = 0;
  for (const s of tree) {
    const m = await processMemory(s.pid);
    rss += m.rss;
    pss += m.pss;
    anon += m.anon;
    if (s.pid === root) {
      rootRss = m.rss;
      rootHwm = m.hwm;
    }
  }
  return { rss, pss, anon, rootRss, rootHwm, processes: tree.length };
}

/**
 * Resets a process's peak RSS (VmHWM) to its current RSS (`echo 5 > /proc/PID/clear_refs`); false when not
 * allowed.
 *
 * @example
 * ```ts
 * declare const pid: number;
 * await resetPeakRss(pid);
 * ```
 */
export async function resetPeakRss(pid: number): Promise<boolean> {
  try {
    await Deno.writeTextFile(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * The 1-minute load average (the machine is shared: each figure is recorded with the load it ran under).
 *
 * @example
 * ```ts
 * const load = await loadAverage();
 * console.log(load);
 * ```
 */
export async function loadAverage(): Promise<number> {
  try {
    return Number((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
  } catch {
    return NaN;
  }
}

/** The machine the bench ran on, for the report header. */
export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memTotalMb: number;
  memAvailableMb: number;
  kernel: string;
  deno: string;
  loadavg: string;
}

/**
 * Describes the machine (CPU count and model, memory, kernel, Deno version, load average).
 *
 * @example
 * ```ts
 * const m = await machineInfo();
 * console.log(m.cpus, m.cpuModel);
 * ```
 */
export async function machineInfo(): Promise<MachineInfo> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const mem = (k: string) =>
    Math.round((Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(meminfo)?.[1]) || 0) / 1024);
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    memTotalMb: mem("MemTotal"),
    memAvailableMb: mem("MemAvailable"),
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    loadavg: (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ").slice(0, 3).join(" "),
  };
}
