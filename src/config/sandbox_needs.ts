/**
 * What a part of outpost needs from the system: files it reads and writes, addresses it listens on or connects
 * to, programs it runs, environment variables, and the folders the board must give it.
 *
 * Each area (FTP, mail, alerts, device) declares its needs from its own *parsed* config, next to its config
 * reader; `configSandboxNeeds` in `config.ts` combines them; the prepare step turns the result into Deno flags
 * (`--allow-read=...`) and the unit's `ReadWritePaths=`, and the daemon checks a reloaded config against the
 * flags it is running under. No one re-reads raw TOML for this.
 *
 * @module
 */

/**
 * The needs of a whole config (or one area of it), as plain lists.
 *
 * @example
 * ```ts
 * const needs = new SandboxNeedsBuilder();
 * needs.readWrite("/var/lib/outpost", { own: true });
 * const n: SandboxNeeds = needs.build();
 * n.write; // ["/var/lib/outpost"]
 * ```
 */
export interface SandboxNeeds {
  /** Paths read (a folder covers everything below it). */
  read: string[];
  /** Paths written or created (a folder covers everything below it); the unit's `ReadWritePaths=`. */
  write: string[];
  /** `host:port` / `:port` entries for `--allow-net`, or "all" when peers are arbitrary (FTP active mode). */
  net: string[] | "all";
  /** Environment variables read. */
  env: string[];
  /** Programs run (names looked up on PATH, or absolute paths). */
  run: string[];
  /** `--allow-sys` names (hostname, statfs, ...). */
  sys: string[];
  /** True when a listening port is below 1024 (CAP_NET_BIND_SERVICE). */
  bindsPrivilegedPort: boolean;
  /** True when a configured program may need device files (a command sensor reading I2C, GPIO, a serial port). */
  devices: boolean;
  /** Folders the prepare step creates (owned by the daemon's user) when missing. */
  dataDirs: string[];
  /** Files the prepare step creates (owned by the daemon's user) when missing, e.g. a log in a root-owned folder. */
  dataFiles: string[];
  /** Human-readable remarks (why net access is wide, ...). */
  notes: string[];
}

/**
 * Collects needs without duplicates; every area adds to one builder (or builds its own and `merge`s).
 *
 * @example
 * ```ts
 * const b = new SandboxNeedsBuilder();
 * b.listen("0.0.0.0", 21);
 * b.connect("smtp.example.com", 587);
 * b.build().net; // [":21", "smtp.example.com:587"]
 * ```
 */
export class SandboxNeedsBuilder {
  readonly #read = new Set<string>();
  readonly #write = new Set<string>();
  readonly #net = new Set<string>();
  readonly #env = new Set<string>();
  readonly #run = new Set<string>();
  readonly #sys = new Set<string>();
  readonly #dirs = new Set<string>();
  readonly #files = new Set<string>();
  readonly #notes: string[] = [];
  #netAll = false;
  #privileged = false;
  #devices = false;

  /** Read access to `path` (a folder covers everything below it). */
  read(path: string): this {
    this.#read.add(path);
    return this;
  }

  /** Read and write access to `path`; with `own`, prepare creates it (a folder) owned by the daemon's user. */
  readWrite(path: string, opts: { own?: boolean; file?: boolean } = {}): this {
    this.#read.add(path);
    this.#write.add(path);
    if (opts.own) (opts.file ? this.#files : this.#dirs).add(path);
    return this;
  }

  /** A folder prepare creates (owned by the daemon's user) when missing, without write access for the daemon. */
  ownDir(path: string): this {
    this.#dirs.add(path);
    return this;
  }

  /** Listening on `host:port`; a wildcard host allows the port on any local address. */
  listen(host: string, port: number): this {
    if (port > 0 && port < 1024) this.#privileged = true;
    this.#net.add(netEntry(host, port));
    // Deno's ":port" covers every IPv4 address but not IPv6 ones: a dual-stack "::" listener needs its own entry.
    if (host === "::" || host === "[::]") this.#net.add(`[::]:${port}`);
    return this;
  }

  /** Connecting to `host:port`. */
  connect(host: string, port: number): this {
    this.#net.add(netEntry(host, port, false));
    return this;
  }

  /** Any address and port on `host` (no port list possible). */
  anyPortOn(host: string): this {
    this.#net.add(bracket(host));
    return this;
  }

  /** Arbitrary peers: `--allow-net` cannot be narrowed; `why` says which setting causes it. */
  anyNet(why: string): this {
    this.#netAll = true;
    this.#notes.push(why);
    return this;
  }

  /** Reading environment variable `name`. */
  env(name: string): this {
    this.#env.add(name);
    return this;
  }

  /** Running `program` (a name on PATH or an absolute path). */
  run(program: string): this {
    this.#run.add(program);
    return this;
  }

  /** A configured program may need device files (the unit then keeps /dev). */
  devices(): this {
    this.#devices = true;
    return this;
  }

  /** An `--allow-sys` name. */
  sys(name: string): this {
    this.#sys.add(name);
    return this;
  }

  /** A remark shown by the prepare step and in the unit. */
  note(text: string): this {
    this.#notes.push(text);
    return this;
  }

  /** Adds everything in `other`. */
  merge(other: SandboxNeeds): this {
    for (const p of other.read) this.#read.add(p);
    for (const p of other.write) this.#write.add(p);
    if (other.net === "all") this.#netAll = true;
    else for (const n of other.net) this.#net.add(n);
    for (const e of other.env) this.#env.add(e);
    for (const r of other.run) this.#run.add(r);
    for (const s of other.sys) this.#sys.add(s);
    for (const d of other.dataDirs) this.#dirs.add(d);
    for (const f of other.dataFiles) this.#files.add(f);
    for (const n of other.notes) if (!this.#notes.includes(n)) this.#notes.push(n);
    if (other.bindsPrivilegedPort) this.#privileged = true;
    if (other.devices) this.#devices = true;
    return this;
  }

  /** The collected needs. */
  build(): SandboxNeeds {
    return {
      read: collapsePaths([...this.#read]),
      write: collapsePaths([...this.#write]),
      net: this.#netAll ? "all" : [...this.#net],
      env: [...this.#env],
      run: [...this.#run],
      sys: [...this.#sys],
      bindsPrivilegedPort: this.#privileged,
      devices: this.#devices,
      dataDirs: [...this.#dirs],
      dataFiles: [...this.#files],
      notes: [...this.#notes],
    };
  }
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** True for the "any local address" hosts. */
export function isWildcardHost(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]" || host === "";
}

function netEntry(host: string, port: number, listening = true): string {
  // Deno's ":PORT" covers listening on 0.0.0.0 (and loopback) only, not on "::" nor on a LAN address; so the FTP
  // server binds its passive listeners to the same wildcard address as its control listener (ftp_session.ts).
  if (listening && (host === "::" || host === "[::]")) return `[::]:${port}`;
  if (listening && isWildcardHost(host)) return `:${port}`;
  return `${bracket(host)}:${port}`;
}

/**
 * True when `path` is `dir` or below it (plain path strings, as Deno's permission check compares them).
 *
 * @example
 * ```ts
 * isWithin("/var/lib/outpost/tls", "/var/lib/outpost"); // true
 * isWithin("/var/lib/outpost2", "/var/lib/outpost"); // false
 * ```
 */
export function isWithin(path: string, dir: string): boolean {
  if (dir === "/") return path.startsWith("/");
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/**
 * The folder holding `path` ("/" for top-level entries).
 *
 * @example
 * ```ts
 * parentDir("/var/lib/outpost/alerts.json"); // "/var/lib/outpost"
 * ```
 */
export function parentDir(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/**
 * Drops every path that lies within another one of the list (a folder grant covers what is below it), keeping
 * the order of the rest.
 *
 * @example
 * ```ts
 * collapsePaths(["/var/lib/outpost", "/var/lib/outpost/outbox", "/srv/ftp"]); // ["/var/lib/outpost", "/srv/ftp"]
 * ```
 */
export function collapsePaths(paths: string[]): string[] {
  const unique = [...new Set(paths)];
  return unique.filter((p) => !unique.some((q) => q !== p && isWithin(p, q)));
}
