/**
 * One QEMU arm64 virtual machine for the boot test: `qemu-system-aarch64 -M virt` booting the kernel and initramfs
 * taken from the image's boot partition with the image's own `cmdline.txt` root (PARTUUID), a virtio disk, the
 * serial console captured to a file, QEMU's user network restricted to loopback forwards (hostfwd to 127.0.0.1
 * only, guestfwd for the SMTP relay), and a virtio serial port to the test agent in the guest
 * (scripts/boot/agent.sh) for running commands. Every wait is bounded.
 *
 * @module
 */

/** How to start the machine. */
export interface VmOptions {
  image: string;
  kernel: string;
  initrd: string;
  /** Kernel command line (root=PARTUUID=... from the image's cmdline.txt, console=ttyAMA0). */
  append: string;
  memoryMiB: number;
  cpus?: number;
  /** Folder for the console log and the agent socket. */
  dir: string;
  /** Name used in file names (e.g. "boot1"). */
  name: string;
  /** Host port (on 127.0.0.1) to guest port. */
  hostfwd: { host: number; guest: number }[];
  /** Guest address:port whose connections run `cmd` (stdin/stdout = the connection). */
  guestfwd?: { addr: string; port: number; cmd: string };
}

/** The result of a command run in the guest. */
export interface GuestResult {
  code: number;
  output: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A running (or finished) virtual machine. */
export class Vm {
  readonly console: string;
  readonly socket: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  #exited = false;
  #status: Promise<Deno.CommandStatus>;
  #conn: Deno.UnixConn | null = null;
  #buf = "";
  #seq = 0;
  #stderr = "";

  private constructor(
    readonly opts: VmOptions,
    child: Deno.ChildProcess,
    consoleLog: string,
    socket: string,
  ) {
    this.child = child;
    this.pid = child.pid;
    this.console = consoleLog;
    this.socket = socket;
    this.#status = child.status.then((s) => {
      this.#exited = true;
      return s;
    });
    (async () => {
      const dec = new TextDecoder();
      for await (const c of child.stderr) {
        if (this.#stderr.length < 65536) this.#stderr += dec.decode(c, { stream: true });
      }
    })();
  }

  /** Starts QEMU (returns at once; see {@link Vm.waitForAgent}). */
  static start(opts: VmOptions): Vm {
    const consoleLog = `${opts.dir}/${opts.name}-console.log`;
    const socket = `${opts.dir}/${opts.name}-agent.sock`;
    try {
      Deno.removeSync(socket);
    } catch {
      // Not there.
    }
    const net = [
      "user",
      "id=n0",
      "restrict=on",
      ...opts.hostfwd.map((f) => `hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`),
      ...(opts.guestfwd
        ? [
          `guestfwd=tcp:${opts.guestfwd.addr}:${opts.guestfwd.port}-cmd:${
            opts.guestfwd.cmd.replace(/,/g, ",,")
          }`,
        ]
        : []),
    ].join(",");
    const args = [
      "-M",
      "virt",
      "-cpu",
      "cortex-a53",
      "-smp",
      String(opts.cpus ?? 2),
      "-m",
      String(opts.memoryMiB),
      "-nodefaults",
      "-display",
      "none",
      "-no-reboot",
      "-kernel",
      opts.kernel,
      "-initrd",
      opts.initrd,
      "-append",
      opts.append,
      "-drive",
      `if=none,id=disk0,format=raw,file=${opts.image},cache=writeback`,
      "-device",
      "virtio-blk-pci,drive=disk0",
      "-netdev",
      net,
      "-device",
      "virtio-net-pci,netdev=n0",
      "-chardev",
      `socket,id=agent,path=${socket},server=on,wait=off`,
      "-device",
      "virtio-serial-pci",
      "-device",
      "virtserialport,chardev=agent,name=org.outpost.agent",
      "-serial",
      `file:${consoleLog}`,
      "-object",
      "rng-random,filename=/dev/urandom,id=rng0",
      "-device",
      "virtio-rng-pci,rng=rng0",
    ];
    const child = new Deno.Command("qemu-system-aarch64", {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    return new Vm(opts, child, consoleLog, socket);
  }

  /** True once QEMU has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** What QEMU printed on stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The serial console so far. */
  async consoleText(): Promise<string> {
    return await Deno.readTextFile(this.console).catch(() => "");
  }

  async #connect(deadline: number): Promise<Deno.UnixConn> {
    while (Date.now() < deadline) {
      if (this.#exited) throw new Error(`QEMU exited: ${this.#stderr.trim()}`);
      try {
        return await Deno.connect({ transport: "unix", path: this.socket });
      } catch {
        await sleep(250);
      }
    }
    throw new Error("QEMU's agent socket did not appear");
  }

  /** Reads the agent connection into the line buffer until it closes. */
  async #pump(conn: Deno.UnixConn): Promise<void> {
    const buf = new Uint8Array(65536);
    const dec = new TextDecoder();
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        if (this.#conn === conn) this.#buf += dec.decode(buf.subarray(0, n), { stream: true });
      }
    } catch {
      // Closed under us.
    }
    if (this.#conn === conn) this.#conn = null;
  }

  async #readLine(deadline: number): Promise<string | null> {
    while (true) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        return line;
      }
      if (Date.now() >= deadline || this.#exited || !this.#conn) return null;
      await sleep(100);
    }
  }

  /**
   * Runs `script` with bash in the guest and returns its exit status and output (stdout and stderr together).
   * Throws when no answer comes within `timeoutMs`.
   */
  async exec(script: string, timeoutMs = 120_000): Promise<GuestResult> {
    const deadline = Date.now() + timeoutMs;
    if (!this.#conn) {
      this.#conn = await this.#connect(deadline);
      this.#buf = "";
      this.#pump(this.#conn);
    }
    const id = `q${++this.#seq}`;
    const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(script)));
    await this.#conn.write(new TextEncoder().encode(`${id} ${b64}\n`));
    while (true) {
      const line = await this.#readLine(deadline);
      if (line === null) throw new Error(`No answer from the guest agent within ${timeoutMs} ms`);
      const m = /^RES (\S+) (\d+) ?(\S*)$/.exec(line.trim());
      if (!m || m[1] !== id) continue;
      const bytes = Uint8Array.from(atob(m[3]), (c) => c.charCodeAt(0));
      return { code: Number(m[2]), output: new TextDecoder().decode(bytes) };
    }
  }

  /** Waits until the agent answers (the guest has booted to multi-user), bounded by `timeoutMs`. */
  async waitForAgent(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown = null;
    while (Date.now() < deadline) {
      if (this.#exited) throw new Error(`QEMU exited during boot: ${this.#stderr.trim() || "(no message)"}`);
      try {
        const r = await this.exec("echo agent-up", Math.min(20_000, Math.max(1000, deadline - Date.now())));
        if (r.output.includes("agent-up")) return;
      } catch (e) {
        last = e;
        // The guest ignores requests sent before its agent opened the port; reconnect and ask again.
        this.#dropConn();
      }
    }
    throw new Error(
      `The guest did not answer within ${timeoutMs / 1000} s (${(last as Error)?.message ?? ""})`,
    );
  }

  #dropConn(): void {
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
    this.#conn = null;
    this.#buf = "";
  }

  /** Waits (bounded) for QEMU to exit by itself; true when it did. */
  async waitExit(timeoutMs: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      this.#status.then(() => true),
      new Promise<false>((res) => timer = setTimeout(() => res(false), timeoutMs)),
    ]);
    clearTimeout(timer);
    return r;
  }

  /** Clean shutdown: `systemctl poweroff` in the guest, then wait; SIGKILL after `timeoutMs`. */
  async poweroff(timeoutMs = 180_000): Promise<boolean> {
    try {
      await this.exec("(sleep 1; systemctl poweroff) >/dev/null 2>&1 &", 20_000);
    } catch {
      // The guest may be going down already.
    }
    this.#dropConn();
    const clean = await this.waitExit(timeoutMs);
    if (!clean) await this.kill();
    return clean;
  }

  /** The power cut: SIGKILL to QEMU, then wait for it to be gone. */
  async kill(): Promise<void> {
    this.#dropConn();
    if (!this.#exited) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await this.waitExit(30_000);
  }
}
