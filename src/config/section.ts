/**
 * Typed, key-naming access to one table of a parsed TOML config.
 *
 * Every reader records a problem instead of throwing, so one run of `outpost check-config` lists every mistake in
 * the file, each as `key.path: what is wrong`. {@link Section.finish} also reports keys nobody read (typos).
 *
 * @module
 */

/**
 * The config could not be used; `problems` lists each one as `key: problem`.
 *
 * @example
 * ```ts
 * try { loadConfig(text); } catch (e) { if (e instanceof ConfigError) console.error(e.problems.join("\n")); }
 * ```
 */
export class ConfigError extends Error {
  /** Every problem found, each as `key.path: what is wrong`. */
  readonly problems: string[];
  /**
   * Makes the error; `source` (the file path, or "config") names what was invalid in the message, unless
   * `headline` says what went wrong instead (e.g. "No config file was found").
   */
  constructor(problems: string[], source: string = "config", headline?: string) {
    const what = source === "config"
      ? "The config"
      : source.includes("/")
      ? `The config file ${source}`
      : source;
    super(`${headline ?? `${what} is not valid`}:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "a list";
  if (v instanceof Date) return "a date";
  if (isTable(v)) return "a table";
  // A string is shown as the user wrote it ("soon"); other scalars with their kind (number 5, boolean true).
  return typeof v === "string" ? JSON.stringify(v) : `${typeof v} ${JSON.stringify(v)}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

/**
 * Parses `"30s"`, `"5m"`, `"1h30m"`, `"250ms"` or a bare number of seconds into milliseconds; null if invalid.
 *
 * @example
 * ```ts
 * parseDuration("1h30m"); // 5400000
 * ```
 */
export function parseDuration(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : null;
  if (typeof v !== "string") return null;
  const s = v.trim().toLowerCase();
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(s)) return null;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(m[1]) * DURATION_UNITS[m[2]];
  return Math.round(total);
}

/**
 * Parses `"10MB"`, `"64MiB"`, `"512k"` or a bare number of bytes; null if invalid.
 *
 * @example
 * ```ts
 * parseSize("64MiB"); // 67108864
 * ```
 */
export function parseSize(v: unknown): number | null {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 ? v : null;
  if (typeof v !== "string") return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  if (!m) return null;
  const unit = SIZE_UNITS[(m[2] || "b").toLowerCase()];
  return unit === undefined ? null : Math.round(Number(m[1]) * unit);
}

/**
 * One table of the config, read key by key with defaults, ranges and problems recorded against the key's path.
 *
 * @example
 * ```ts
 * const problems: string[] = [];
 * const ftp = new Section({ port: 21 }, "ftp", problems);
 * const port = ftp.int("port", { default: 21, min: 1, max: 65535 });
 * ftp.finish();
 * ```
 */
export class Section {
  /** Dotted path of this table in the file ("" for the top level), prefixed to every problem's key. */
  readonly path: string;
  /** The shared list problems are recorded into (one list for the whole file). */
  readonly problems: string[];
  readonly #table: Table;
  readonly #read = new Set<string>();
  readonly #present: boolean;
  /** Directory that relative file paths in this table are resolved against (the config file's folder). */
  readonly baseDir: string;

  /**
   * Wraps `table` (undefined = not in the file; anything but a table is recorded as a problem and read as empty).
   */
  constructor(table: unknown, path: string, problems: string[], baseDir: string = Deno.cwd()) {
    this.path = path;
    this.problems = problems;
    this.baseDir = baseDir;
    this.#present = table !== undefined;
    if (table !== undefined && !isTable(table)) {
      problems.push(`${path || "(top level)"}: must be a table, got ${describe(table)}`);
      table = {};
    }
    this.#table = (table ?? {}) as Table;
  }

  /** True when the table was written in the file (not just defaulted). */
  get present(): boolean {
    return this.#present;
  }

  /** The dotted path of `key` in this table, as shown in problems. */
  keyPath(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  /** Records a problem against `key`. */
  problem(key: string, message: string): void {
    this.problems.push(`${this.keyPath(key)}: ${message}`);
  }

  /** True when `key` is set in the file. */
  has(key: string): boolean {
    return this.#table[key] !== undefined;
  }

  /** The raw value of `key`, marked as read. */
  raw(key: string): unknown {
    this.#read.add(key);
    return this.#table[key];
  }

  /** A string; `oneOf` restricts it to a set of words. With a default, a missing or bad value yields it. */
  string(key: string, opts: { default: string; oneOf?: readonly string[] }): string;
  /** A string or undefined when missing (a problem too when `required`); `oneOf` restricts it to a set of words. */
  string(
    key: string,
    opts?: { default?: undefined; oneOf?: readonly string[]; required?: boolean },
  ): string | undefined;
  string(
    key: string,
    opts: { default?: string; oneOf?: readonly string[]; required?: boolean } = {},
  ): string | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (opts.required) this.problem(key, "is required");
      return opts.default;
    }
    if (typeof v !== "string") {
      this.problem(key, `must be a string, got ${describe(v)}`);
      return opts.default;
    }
    if (opts.oneOf && !opts.oneOf.includes(v)) {
      this.problem(key, `must be one of ${opts.oneOf.map((o) => JSON.stringify(o)).join(", ")}, got "${v}"`);
      return opts.default;
    }
    return v;
  }

  /** An integer within [min, max]. */
  int(key: string, opts: { default: number; min?: number; max?: number }): number {
    const v = this.raw(key);
    if (v === undefined) return opts.default;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.problem(key, `must be a whole number, got ${describe(v)}`);
      return opts.default;
    }
    return this.#range(key, v, opts);
  }

  /** A number (integer or float) within [min, max]; a missing or bad value yields the default. */
  number(key: string, opts: { default: number; min?: number; max?: number }): number;
  /** A number (integer or float) within [min, max], or undefined when missing or bad. */
  number(key: string, opts?: { default?: undefined; min?: number; max?: number }): number | undefined;
  number(key: string, opts: { default?: number; min?: number; max?: number } = {}): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return opts.default;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      this.problem(key, `must be a number, got ${describe(v)}`);
      return opts.default;
    }
    return this.#range(key, v, opts);
  }

  #range<T extends number | undefined>(
    key: string,
    v: number,
    opts: { default?: T; min?: number; max?: number },
  ): number | T {
    if (opts.min !== undefined && v < opts.min) {
      this.problem(key, `must be at least ${opts.min}, got ${v}`);
      return opts.default as T;
    }
    if (opts.max !== undefined && v > opts.max) {
      this.problem(key, `must be at most ${opts.max}, got ${v}`);
      return opts.default as T;
    }
    return v;
  }

  /** A file or folder path; a relative one is resolved against {@link Section.baseDir}. Default when missing. */
  filePath(key: string, opts: { default: string }): string;
  /** A file or folder path resolved against {@link Section.baseDir}, or undefined when missing. */
  filePath(key: string, opts?: { default?: undefined; required?: boolean }): string | undefined;
  filePath(key: string, opts: { default?: string; required?: boolean } = {}): string | undefined {
    const v = this.string(key, { required: opts.required });
    const p = v ?? opts.default;
    if (p === undefined) return undefined;
    if (p.includes("\0")) {
      this.problem(key, "must not contain a NUL byte");
      return opts.default;
    }
    if (/[\s,]/.test(p)) {
      // Deno's sandbox flags are comma-separated lists and the unit's are space-separated: such a path could
      // not be granted on the board.
      this.problem(key, `must not contain spaces or commas (the board's sandbox cannot name it), got "${p}"`);
      return opts.default;
    }
    return resolvePath(this.baseDir, p);
  }

  /** A boolean. */
  bool(key: string, defaultValue: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined) return defaultValue;
    if (typeof v !== "boolean") {
      this.problem(key, `must be true or false, got ${describe(v)}`);
      return defaultValue;
    }
    return v;
  }

  /** A duration (`"30s"`, `"5m"`, or seconds as a number), in milliseconds. */
  duration(key: string, defaultMs: number, opts: { min?: number; max?: number } = {}): number {
    const v = this.raw(key);
    if (v === undefined) return defaultMs;
    const ms = parseDuration(v);
    if (ms === null) {
      this.problem(key, `must be a duration such as "30s", "5m" or "2h", got ${describe(v)}`);
      return defaultMs;
    }
    return this.#range(key, ms, { default: defaultMs, ...opts });
  }

  /** A size (`"10MB"`, `"64MiB"`, or bytes as a number), in bytes. */
  size(key: string, defaultBytes: number, opts: { min?: number; max?: number } = {}): number {
    const v = this.raw(key);
    if (v === undefined) return defaultBytes;
    const n = parseSize(v);
    if (n === null) {
      this.problem(key, `must be a size such as "10MB" or "64MiB", got ${describe(v)}`);
      return defaultBytes;
    }
    return this.#range(key, n, { default: defaultBytes, ...opts });
  }

  /** A list of strings. */
  strings(key: string, defaultValue: string[]): string[] {
    const v = this.raw(key);
    if (v === undefined) return defaultValue;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      this.problem(key, `must be a list of strings, got ${describe(v)}`);
      return defaultValue;
    }
    return v as string[];
  }

  /** A sub-table (missing means empty). */
  section(key: string): Section {
    return new Section(this.raw(key), this.keyPath(key), this.problems, this.baseDir);
  }

  /** An array of tables (`[[key]]`), each as a section named `key[i]`. */
  sections(key: string): Section[] {
    const v = this.raw(key);
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      this.problem(key, `must be a list of tables ([[${this.keyPath(key)}]]), got ${describe(v)}`);
      return [];
    }
    return v.map((t, i) => new Section(t, `${this.keyPath(key)}[${i}]`, this.problems, this.baseDir));
  }

  /** A table whose keys are names and whose values are tables (`[key.name]`). */
  namedSections(key: string): Map<string, Section> {
    const out = new Map<string, Section>();
    const v = this.raw(key);
    if (v === undefined) return out;
    if (!isTable(v)) {
      this.problem(key, `must be a table, got ${describe(v)}`);
      return out;
    }
    for (const [name, t] of Object.entries(v)) {
      out.set(name, new Section(t, `${this.keyPath(key)}.${name}`, this.problems, this.baseDir));
    }
    return out;
  }

  /** Records every key that no reader asked for as unknown (usually a typo). Call after reading all keys. */
  finish(): void {
    for (const key of Object.keys(this.#table)) {
      if (this.#read.has(key)) continue;
      const near = [...this.#read].find((k) => closeEnough(k, key));
      this.problem(key, `unknown key${near ? ` (did you mean "${near}"?)` : ""}`);
    }
  }
}

function closeEnough(a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 2) return false;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length] <= 2;
}

/**
 * Resolves `p` against `base` unless it is absolute, and normalises `.` and `..` segments.
 *
 * @example
 * ```ts
 * resolvePath("/boot/firmware", "data"); // "/boot/firmware/data"
 * ```
 */
export function resolvePath(base: string, p: string): string {
  const full = p.startsWith("/") ? p : `${base.replace(/\/+$/, "")}/${p}`;
  const out: string[] = [];
  for (const seg of full.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return "/" + out.join("/");
}
