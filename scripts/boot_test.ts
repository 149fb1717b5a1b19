/**
 * `deno task boot-test`: the SD-card image, proven by booting it.
 *
 * Builds (or takes from the cache) a Raspberry Pi OS Lite-like base image from Debian bookworm arm64
 * (scripts/boot/base_image.ts), runs the project's own image builder on it exactly as on a real Pi OS image, and
 * boots the result under `qemu-system-aarch64 -M virt` (scripts/boot/qemu.ts) at 1 GiB (board rpi4) and at
 * 512 MiB (board rpi-zero2w), with the kernel and initramfs taken from the image's boot partition and root by the
 * PARTUUID in its cmdline.txt. Networking is QEMU's user mode restricted to loopback forwards: FTP control and
 * passive ports on 127.0.0.1, and the guest's SMTP relay address forwarded to an aiosmtpd sink on 127.0.0.1.
 *
 * Each check is a named step with its time; the run ends with `N passed, N failed` and exits non-zero on any
 * failure. A missing tool is a failure, never a skip. Needs root (or a user that may mount binfmt_misc once) for the
 * first base build; later runs take the cached base image.
 *
 * ```sh
 * deno task boot-test            # all steps
 * deno task boot-test --keep     # keep the work folder (images, console logs) and print where it is
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { buildImage } from "./build_image.ts";
import { ensureBaseImage } from "./boot/base_image.ts";
import { Vm } from "./boot/qemu.ts";
import {
  checkFilesystems,
  type ImageLayout,
  mtoolsImage,
  readImageLayout,
  resolveTool,
  runTool,
} from "./disk_image.ts";
import { hashPassword } from "../src/config/password.ts";
import { type Sink, startSink } from "../tests/helpers/smtp_sink.ts";

/** Guest address whose port 25 QEMU forwards to the SMTP sink. */
const RELAY_ADDR = "10.0.2.100";
const FTP_PASSWORD = "boot-test-secret";
const BOOT_TIMEOUT_MS = 15 * 60_000;
const SERVICE_TIMEOUT_MS = 6 * 60_000;

/** One step's outcome. */
interface StepResult {
  name: string;
  ok: boolean;
  ms: number;
  detail: string;
}

/** Runs named steps, prints one line each, and counts. */
class Steps {
  readonly results: StepResult[] = [];

  /** Runs `fn` as step `name`; a thrown error fails it. Returns whether it passed. */
  async run(name: string, fn: () => Promise<string | void>): Promise<boolean> {
    const t0 = performance.now();
    let ok = true;
    let detail = "";
    try {
      detail = (await fn()) ?? "";
    } catch (e) {
      ok = false;
      detail = (e instanceof Error ? e.message : String(e)).trim();
    }
    const ms = performance.now() - t0;
    this.results.push({ name, ok, ms, detail });
    const first = detail.split("\n")[0];
    console.log(`${ok ? "ok  " : "FAIL"} ${name} (${(ms / 1000).toFixed(1)} s)${first ? `: ${first}` : ""}`);
    if (!ok && detail.includes("\n")) {
      console.log(detail.split("\n").slice(1, 40).map((l) => `     ${l}`).join("\n"));
    }
    return ok;
  }

  /** Records steps that cannot run because an earlier one failed (failures, not skips). */
  notRun(names: string[], why: string): void {
    for (const name of names) {
      this.results.push({ name, ok: false, ms: 0, detail: `not run: ${why}` });
      console.log(`FAIL ${name} (0.0 s): not run: ${why}`);
    }
  }

  get passed(): number {
    return this.results.filter((r) => r.ok).length;
  }

  get failed(): number {
    return this.results.filter((r) => !r.ok).length;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A free 127.0.0.1 port. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `n` consecutive free 127.0.0.1 ports (the passive range: the guest announces the same numbers). */
function freeRange(n: number): number[] {
  for (let attempt = 0; attempt < 200; attempt++) {
    const start = 20000 + Math.floor(Math.random() * 12000); // below Linux's ephemeral ports (32768-60999)
    const held: Deno.Listener[] = [];
    try {
      for (let p = start; p < start + n; p++) held.push(Deno.listen({ hostname: "127.0.0.1", port: p }));
      return held.map((l) => (l.addr as Deno.NetAddr).port);
    } catch {
      // Taken; try another start.
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error(`No ${n} consecutive free ports on 127.0.0.1`);
}

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs curl with a time bound; returns exit status and output. */
async function curl(args: string[], maxSeconds = 120): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", String(maxSeconds), "--connect-timeout", "20", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

const RELAY_PY = String.raw`
import os, selectors, socket, sys
# QEMU guestfwd helper: stdin/stdout is one guest connection; relay it to 127.0.0.1:PORT (the SMTP sink).
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
except OSError:
    sys.exit(1)
s.settimeout(None)
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select(timeout=300):
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                s.shutdown(socket.SHUT_WR)
                sel.unregister(0)
            else:
                s.sendall(data)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
`;

/** The config the boot test puts on the boot partition, as a user would after flashing. */
/**
 * The board's outpost.toml. `extraUser` adds bob; `widerSandbox` puts bob's root under /home (the unit hides /home
 * until the prepare step's drop-in says `ProtectHome=read-only`) and adds a command sensor that looks at a disk
 * device (hidden until the drop-in says `PrivateDevices=no`), so the edited config is proven to widen the sandbox
 * under real systemd, and the next config without them to narrow it again.
 */
async function bootConfig(
  board: string,
  passive: number[],
  extraUser = false,
  widerSandbox = false,
): Promise<string> {
  const hash = await hashPassword(FTP_PASSWORD, 1000);
  const bobRoot = widerSandbox ? BOB_HOME_ROOT : "/srv/ftp/bob";
  const users = [
    `[[ftp.users]]\nname = "pi"\npassword_hash = "${hash}"\nroot = "/srv/ftp/pi"\npermissions = ["all"]\n`,
    ...(extraUser
      ? [
        `[[ftp.users]]\nname = "bob"\npassword_hash = "${hash}"\nroot = "${bobRoot}"\npermissions = ["all"]\n`,
      ]
      : []),
  ];
  const deviceSensor = widerSandbox
    ? `
[sensors.disk_device]
type = "command"
command = "if [ -b /dev/vda ]; then echo 1; else echo 0; fi"
interval = "2s"

[[rules]]
name = "disk_device_seen"
sensor = "disk_device"
above = 0.5
`
    : "";
  return `# outpost.toml written by the boot test (scripts/boot_test.ts)
[device]
name = "boot-test"
board = "${board}"

[ftp]
port = 21
active = false
[ftp.passive]
ports = "${passive[0]}-${passive[passive.length - 1]}"
address = "127.0.0.1"
[ftp.tls]
mode = "optional"
implicit_port = 0

${users.join("\n")}
[smtp]
host = "${RELAY_ADDR}"
port = 25
security = "none"
allow_insecure = true
from = "boot-test@outpost.test"

[outbox]
retry_min = "2s"
retry_max = "5s"
poll_interval = "5s"

[alerts]
enabled = true
to = ["ops@outpost.test"]
interval = "2s"

[sensors.probe]
type = "file"
path = "/srv/ftp/pi/probe.txt"
interval = "2s"
optional = true

[[rules]]
name = "probe_high"
sensor = "probe"
above = 50
${deviceSensor}`;
}

/** bob's root in the edited config: under /home, which the unit hides unless the drop-in opens it. */
const BOB_HOME_ROOT = "/home/pi/ftp";

/** Tools the boot test drives; each missing one is a failure. */
const TOOLS = [
  "mmdebstrap",
  "qemu-system-aarch64",
  "qemu-aarch64-static",
  "sfdisk",
  "mkfs.vfat",
  "fsck.fat",
  "mke2fs",
  "e2fsck",
  "debugfs",
  "dumpe2fs",
  "mcopy",
  "mtype",
  "mdir",
  "curl",
  "python3",
  "xz",
  "npm",
];

/** Everything one board's run needs. */
interface Board {
  name: string;
  memoryMiB: number;
  image: string;
  layout: ImageLayout;
  kernel: string;
  initrd: string;
  append: string;
  ftpPort: number;
  passive: number[];
}

/** The test's state across boots. */
class BootTest {
  sink: Sink | null = null;
  boots = 0;
  vm: Vm | null = null;
  readonly steps = new Steps();

  constructor(readonly work: string) {}

  async startSink(): Promise<Sink> {
    this.sink = await startSink({ mode: "plain", dir: this.work });
    return this.sink;
  }

  async stopSink(): Promise<void> {
    await this.sink?.stop();
    this.sink = null;
  }

  /** Reads the kernel, initramfs and root= from the image's boot partition. */
  async bootFiles(image: string, layout: ImageLayout, name: string) {
    const fat = mtoolsImage(image, layout.boot);
    const kernel = `${this.work}/${name}-kernel8.img`;
    const initrd = `${this.work}/${name}-initramfs8`;
    for (const [src, dst] of [["kernel8.img", kernel], ["initramfs8", initrd]]) {
      const r = await runTool("mcopy", ["-o", "-i", fat, `::/${src}`, dst]);
      if (r.code !== 0) throw new Error(`Cannot take ${src} from the boot partition: ${r.stderr.trim()}`);
    }
    const cmdline = await runTool("mtype", ["-i", fat, "::/cmdline.txt"]);
    if (cmdline.code !== 0) throw new Error(`Cannot read cmdline.txt: ${cmdline.stderr.trim()}`);
    const words = cmdline.stdout.trim().split(/\s+/);
    const root = words.find((w) => w.startsWith("root=PARTUUID="));
    if (!root) throw new Error(`cmdline.txt has no root=PARTUUID=: ${cmdline.stdout.trim()}`);
    // The Pi's consoles (serial0, tty1) are the virt board's ttyAMA0; everything else is kept as the image has it.
    const append = [...words.filter((w) => !w.startsWith("console=")), "console=ttyAMA0,115200"].join(" ");
    return { kernel, initrd, append };
  }

  /** Boots `board` (bounded) and waits for the guest agent. */
  async boot(board: Board): Promise<Vm> {
    if (this.vm && !this.vm.exited) throw new Error("A machine is still running");
    this.boots++;
    const relay = `${this.work}/relay.py`;
    await Deno.writeTextFile(relay, RELAY_PY);
    const sinkPort = this.sink?.port ?? freePort(); // no sink: connections to the relay address fail
    const vm = Vm.start({
      image: board.image,
      kernel: board.kernel,
      initrd: board.initrd,
      append: board.append,
      memoryMiB: board.memoryMiB,
      dir: this.work,
      name: `boot${this.boots}-${board.name}`,
      hostfwd: [{ host: board.ftpPort, guest: 21 }, ...board.passive.map((p) => ({ host: p, guest: p }))],
      guestfwd: { addr: RELAY_ADDR, port: 25, cmd: `${resolveTool("python3")} ${relay} ${sinkPort}` },
    });
    this.vm = vm;
    console.log(`     qemu pid ${vm.pid}, ${board.memoryMiB} MiB, console ${vm.console}`);
    try {
      await vm.waitForAgent(BOOT_TIMEOUT_MS);
    } catch (e) {
      const tail = (await vm.consoleText()).split("\n").slice(-25).join("\n");
      await vm.kill();
      throw new Error(`${(e as Error).message}\nconsole (last lines):\n${tail}`);
    }
    return vm;
  }

  /** Waits until outpost.service is active (Type=notify: systemd saw READY=1); returns a summary. */
  async serviceActive(vm: Vm): Promise<string> {
    const deadline = Date.now() + SERVICE_TIMEOUT_MS;
    let last = "";
    while (Date.now() < deadline) {
      const r = await vm.exec(
        "systemctl show outpost.service -p ActiveState -p SubState -p Type -p NRestarts -p MainPID " +
          "-p ExecMainStatus --no-pager; systemctl is-active outpost.service",
        60_000,
      );
      last = r.output;
      if (/^ActiveState=active$/m.test(r.output) && /^SubState=running$/m.test(r.output)) {
        const journal = await vm.exec(
          "journalctl -b -u outpost.service --no-pager -o cat | tail -n 400",
          60_000,
        );
        return `${r.output.replace(/\n/g, " ").trim()}\n${journal.output}`;
      }
      if (/^ActiveState=failed$/m.test(r.output) || /^NRestarts=([3-9]|\d\d)/m.test(r.output)) break;
      await sleep(3000);
    }
    const journal = await vm.exec(
      "journalctl -b -u outpost.service -u outpost-firstboot.service --no-pager | tail -n 40",
      60_000,
    )
      .catch((e) => ({ output: String(e) }));
    throw new Error(`outpost.service is not active: ${last.replace(/\n/g, " ")}\n${journal.output}`);
  }

  async rss(vm: Vm): Promise<string> {
    const r = await vm.exec(
      'pid=$(systemctl show -p MainPID --value outpost.service); grep -E "^(VmRSS|VmHWM|RssAnon|RssFile)" /proc/$pid/status; ' +
        "free -m | sed -n 2p",
      30_000,
    );
    const rss = /VmRSS:\s+(\d+) kB/.exec(r.output);
    if (!rss) throw new Error(`No VmRSS for the service: ${r.output}`);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(r.output);
    const mem = r.output.split("\n").find((l) => l.startsWith("Mem:"))?.split(/\s+/) ?? [];
    // RssFile is mostly the Deno binary's code pages: shared, and dropped by the kernel under memory pressure.
    const anon = /RssAnon:\s+(\d+) kB/.exec(r.output);
    const file = /RssFile:\s+(\d+) kB/.exec(r.output);
    const mib = (m: RegExpExecArray | null) => (Number(m?.[1] ?? 0) / 1024).toFixed(1);
    return `RSS ${mib(rss)} MiB (private ${mib(anon)}, file-backed ${mib(file)}), peak ${mib(hwm)} MiB; ` +
      `guest memory used ${mem[2] ?? "?"} of ${mem[1] ?? "?"} MiB, available ${mem[6] ?? "?"} MiB`;
  }

  /** Uploads a random file and downloads it again; the SHA-256s must match. */
  async roundTrip(board: Board, tls: boolean, user = "pi", sizeMiB = 4): Promise<string> {
    const name = `${tls ? "ftps" : "ftp"}-${user}-${this.boots}.bin`;
    const src = `${this.work}/${name}`;
    const back = `${src}.back`;
    const data = new Uint8Array(sizeMiB * 1024 * 1024);
    for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
    await Deno.writeFile(src, data);
    const base = `ftp://127.0.0.1:${board.ftpPort}`;
    const auth = ["--user", `${user}:${FTP_PASSWORD}`, ...(tls ? ["--ssl-reqd", "-k"] : [])];
    const t0 = performance.now();
    const up = await curl([...auth, "-T", src, `${base}/${name}`]);
    if (up.code !== 0) throw new Error(`curl upload exited with ${up.code}: ${up.out.trim()}`);
    const t1 = performance.now();
    const down = await curl([...auth, "-o", back, `${base}/${name}`]);
    if (down.code !== 0) throw new Error(`curl download exited with ${down.code}: ${down.out.trim()}`);
    const t2 = performance.now();
    const [a, b] = [await sha256(src), await sha256(back)];
    if (a !== b) throw new Error(`SHA-256 differs: sent ${a}, got back ${b}`);
    return `${sizeMiB} MiB up in ${((t1 - t0) / 1000).toFixed(1)} s, down in ${
      ((t2 - t1) / 1000).toFixed(1)
    } s, ` +
      `sha256 ${a.slice(0, 16)}… equal`;
  }

  /** Waits (bounded) for a message whose subject matches `re`. */
  async mailArrives(re: RegExp, timeoutMs = 180_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = (await this.sink?.messages() ?? []).find((m) => re.test(m.subject ?? ""));
      if (found) return `"${found.subject}" from ${found.from} to ${found.to.join(",")}`;
      await sleep(1000);
    }
    const got = (await this.sink?.messages() ?? []).map((m) => m.subject).join(" | ");
    throw new Error(`No mail with subject ${re} within ${timeoutMs / 1000} s (got: ${got || "none"})`);
  }

  /** Writes `text` as outpost.toml on the image's boot partition (QEMU must be stopped). */
  async writeConfig(board: Board, text: string, name = "outpost.toml"): Promise<void> {
    if (this.vm && !this.vm.exited) {
      throw new Error("QEMU is still running; the FAT partition is not edited live");
    }
    const f = `${this.work}/outpost.toml`;
    await Deno.writeTextFile(f, text);
    const r = await runTool("mcopy", [
      "-o",
      "-i",
      mtoolsImage(board.image, board.layout.boot),
      f,
      `::/${name}`,
    ]);
    if (r.code !== 0) throw new Error(`mcopy ${name} failed: ${r.stderr.trim()}`);
  }

  async poweroff(): Promise<void> {
    const vm = this.vm;
    if (!vm || vm.exited) return;
    if (!await vm.poweroff(240_000)) throw new Error("The guest did not power off within 240 s (killed)");
  }
}

/** The running unit's ProtectHome= and PrivateDevices=, as systemd applies them (drop-in merged). */
async function sandboxProps(v: Vm): Promise<string> {
  const r = await v.exec(
    "systemctl show outpost.service -p ProtectHome -p PrivateDevices --no-pager",
    30_000,
  );
  return r.output.trim().split("\n").join(" ");
}

async function prepareBoard(
  t: BootTest,
  base: string,
  name: string,
  profile: string,
  memoryMiB: number,
): Promise<Board> {
  const passive = freeRange(4);
  const image = `${t.work}/outpost-${name}.img`;
  const config = `${t.work}/${name}.outpost.toml`;
  await Deno.writeTextFile(config, await bootConfig(profile, passive));
  const lines: string[] = [];
  await buildImage({ base, out: image, board: profile, config, force: true, log: (l) => lines.push(l) });
  const layout = await readImageLayout(image);
  const files = await t.bootFiles(image, layout, name);
  return { name, memoryMiB, image, layout, ...files, ftpPort: freePort(), passive };
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task boot-test [--keep]\n\nSee scripts/boot_test.ts and the README (Boot test).",
    );
    return 0;
  }
  const work = await Deno.makeTempDir({ prefix: "outpost-boot-test-" });
  const t = new BootTest(work);
  const s = t.steps;
  const t0 = performance.now();
  console.log(`boot test: work folder ${work}`);
  // Ctrl-C or a CI timeout: never leave QEMU running.
  const stop = () => {
    if (t.vm && !t.vm.exited) {
      try {
        t.vm.child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    console.log("boot test: interrupted");
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    await runAll(t, s);
  } finally {
    if (t.vm && !t.vm.exited) await t.vm.kill();
    await t.stopSink();
    if (values.keep) console.log(`boot test: kept ${work}`);
    else await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  console.log(`boot test: ${((performance.now() - t0) / 60000).toFixed(1)} minutes`);
  console.log(`${s.passed} passed, ${s.failed} failed`);
  return s.failed === 0 ? 0 : 1;
}

const MAIN_STEPS = [
  "1 GiB: boot to the guest agent",
  "1 GiB: outpost.service active with READY=1",
  "1 GiB: FTP upload and download, equal SHA-256",
  "1 GiB: FTPS upload and download, equal SHA-256",
  "1 GiB: file sensor alert arrives at the sink",
  "1 GiB: mail from /usr/sbin/sendmail in the guest arrives",
  "1 GiB: service RSS",
  "edited outpost.toml on the FAT partition applied after a reboot (root under /home, device sensor)",
  "invalid outpost.toml: last good config runs and the log says so",
  "power cut during an upload and with mail queued",
  "config saved as outpost.toml.txt, without /home or devices: taken, sandbox narrowed again",
  "after the power cut: file systems recovered at boot",
  "after the power cut: no partial upload visible",
  "after the power cut: queued mail delivered",
  "after the power cut: host fsck of both file systems clean",
];

async function runAll(t: BootTest, s: Steps): Promise<void> {
  const missing = TOOLS.filter((tool) => {
    const p = resolveTool(tool);
    try {
      return !Deno.statSync(p.includes("/") ? p : `/nonexistent/${p}`).isFile;
    } catch {
      return true;
    }
  });
  if (
    !await s.run("tools present", () => {
      if (missing.length > 0) {
        throw new Error(
          `missing: ${missing.join(", ")} (apt packages: mmdebstrap qemu-user-static binfmt-support ` +
            "qemu-system-arm fdisk dosfstools e2fsprogs mtools curl python3 python3-aiosmtpd xz-utils npm)",
        );
      }
      return Promise.resolve(`${TOOLS.length} tools`);
    })
  ) {
    s.notRun(["base image", "image builder (rpi4)", ...MAIN_STEPS], "tools missing");
    return;
  }
  let base = "";
  if (
    !await s.run("base image (Debian bookworm arm64, Pi OS Lite-like)", async () => {
      base = await ensureBaseImage((l) => console.log(`     ${l}`));
      return base;
    })
  ) {
    s.notRun(["image builder (rpi4)", ...MAIN_STEPS], "no base image");
    return;
  }
  let board: Board | null = null;
  await s.run("image builder on the base image (board rpi4)", async () => {
    board = await prepareBoard(t, base, "rpi4", "rpi4", 1024);
    return `${board.image}; kernel cmdline: ${board.append}`;
  });
  if (board) await runMain(t, s, board);
  else s.notRun(MAIN_STEPS, "no image");

  let small: Board | null = null;
  const SMALL_STEPS = [
    "512 MiB: boot to the guest agent",
    "512 MiB: outpost.service active with READY=1",
    "512 MiB: FTP upload and download, equal SHA-256",
    "512 MiB: service RSS",
  ];
  await s.run("image builder on the base image (board rpi-zero2w)", async () => {
    small = await prepareBoard(t, base, "zero2w", "rpi-zero2w", 512);
    return small.image;
  });
  if (!small) return s.notRun(SMALL_STEPS, "no image");
  const b: Board = small;
  await t.startSink();
  let vm: Vm | null = null;
  if (!await s.run(SMALL_STEPS[0], async () => void (vm = await t.boot(b)))) {
    return s.notRun(SMALL_STEPS.slice(1), "the guest did not boot");
  }
  const v: Vm = vm!;
  if (await s.run(SMALL_STEPS[1], async () => (await t.serviceActive(v)).split("\n")[0])) {
    await s.run(SMALL_STEPS[2], () => t.roundTrip(b, false, "pi", 16));
    await s.run(SMALL_STEPS[3], () => t.rss(v));
  } else {
    s.notRun(SMALL_STEPS.slice(2), "service not active");
  }
  await t.poweroff().catch(() => {});
}

async function runMain(t: BootTest, s: Steps, board: Board): Promise<void> {
  await t.startSink();
  let vm: Vm | null = null;
  if (!await s.run(MAIN_STEPS[0], async () => void (vm = await t.boot(board)))) {
    return s.notRun(MAIN_STEPS.slice(1), "the guest did not boot");
  }
  let v: Vm = vm!;
  if (!await s.run(MAIN_STEPS[1], async () => (await t.serviceActive(v)).split("\n")[0])) {
    await t.poweroff().catch(() => {});
    return s.notRun(MAIN_STEPS.slice(2), "service not active");
  }
  await s.run(MAIN_STEPS[2], () => t.roundTrip(board, false));
  await s.run(MAIN_STEPS[3], () => t.roundTrip(board, true));
  await s.run(MAIN_STEPS[4], async () => {
    const probe = `${t.work}/probe.txt`;
    await Deno.writeTextFile(probe, "99\n");
    const up = await curl([
      "--user",
      `pi:${FTP_PASSWORD}`,
      "-T",
      probe,
      `ftp://127.0.0.1:${board.ftpPort}/probe.txt`,
    ]);
    if (up.code !== 0) throw new Error(`uploading probe.txt failed: ${up.out.trim()}`);
    return await t.mailArrives(/ALERT.*probe/i);
  });
  await s.run(MAIN_STEPS[5], async () => {
    const r = await v.exec(
      "printf 'Subject: boot-test sendmail\\n\\nhello from the guest\\n' | /usr/sbin/sendmail ops@outpost.test; " +
        "echo status=$?",
      120_000,
    );
    if (!/status=0/.test(r.output)) throw new Error(`sendmail in the guest failed: ${r.output.trim()}`);
    return await t.mailArrives(/^boot-test sendmail$/);
  });
  await s.run(MAIN_STEPS[6], () => t.rss(v));

  // An edited config on the FAT partition (a new user) is applied after a reboot.
  // Its new user's root is under /home and a new command sensor needs /dev: the prepare step must widen the
  // sandbox with its drop-in (ProtectHome=read-only, PrivateDevices=no) before the daemon starts.
  await s.run(MAIN_STEPS[7], async () => {
    await t.poweroff();
    await t.writeConfig(board, await bootConfig("rpi4", board.passive, true, true));
    v = await t.boot(board);
    await t.serviceActive(v);
    const trip = await t.roundTrip(board, false, "bob", 1).catch(async (e) => {
      const j = await v.exec("journalctl -b -u outpost.service --no-pager -o cat | tail -n 20", 60_000);
      throw new Error(`${(e as Error).message}\n${j.output}`);
    });
    const onCard = await v.exec(`ls ${BOB_HOME_ROOT}`, 30_000);
    if (!onCard.output.includes("ftp-bob-")) {
      throw new Error(`bob's upload is not in ${BOB_HOME_ROOT} on the card: ${onCard.output.trim()}`);
    }
    const seen = await t.mailArrives(/ALERT.*disk_device/i);
    const props = await sandboxProps(v);
    if (!/ProtectHome=read-only/.test(props) || !/PrivateDevices=no/.test(props)) {
      throw new Error(`The running unit's sandbox was not widened: ${props}`);
    }
    return `bob in ${BOB_HOME_ROOT}: ${trip}; ${seen}; ${props}`;
  });

  // A broken config: the last good one keeps the board reachable, and the log says so.
  await s.run(MAIN_STEPS[8], async () => {
    await t.poweroff();
    await t.writeConfig(
      board,
      (await bootConfig("rpi4", board.passive, true)) + "\n[ftp]\nport = 'banana'\n",
    );
    v = await t.boot(board);
    const journal = await t.serviceActive(v);
    const said = journal.split("\n").filter((l) => /last good|last-good/i.test(l));
    if (said.length === 0) throw new Error(`The journal does not mention the last good config:\n${journal}`);
    await t.roundTrip(board, false, "bob", 1);
    return said[0].trim();
  });

  // Power cut: mail queued (the relay unreachable) and an upload running, then SIGKILL.
  let bigName = "";
  let narrowed = "";
  let tookTxt = "";
  const cut = await s.run(MAIN_STEPS[9], async () => {
    await t.poweroff();
    // Saved the way Notepad saves it when Explorer hides extensions; the prepare step takes it (newer).
    await t.writeConfig(board, await bootConfig("rpi4", board.passive, true), "outpost.toml.txt");
    await t.stopSink();
    v = await t.boot(board);
    const journal = await t.serviceActive(v);
    tookTxt = journal.split("\n").find((l) => /outpost\.toml\.txt is newer/.test(l))?.trim() ?? "";
    narrowed = await sandboxProps(v);
    const q = await v.exec(
      "printf 'Subject: boot-test queued before the power cut\\n\\nqueued\\n' | /usr/sbin/sendmail ops@outpost.test " +
        "&& sleep 3 && outpost outbox list",
      120_000,
    );
    if (!/power cut/.test(q.output)) throw new Error(`The mail is not in the outbox: ${q.output.trim()}`);
    bigName = `big-${t.boots}.bin`;
    const big = `${t.work}/${bigName}`;
    const data = new Uint8Array(64 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
    await Deno.writeFile(big, data);
    const upload = new Deno.Command("curl", {
      args: [
        "-sS",
        "--max-time",
        "300",
        "--limit-rate",
        "1M",
        "--user",
        `pi:${FTP_PASSWORD}`,
        "-T",
        big,
        `ftp://127.0.0.1:${board.ftpPort}/${bigName}`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    let partial = "";
    for (let i = 0; i < 60 && !partial; i++) {
      await sleep(2000);
      const ls = await v.exec("ls -la /srv/ftp/pi | grep outpost-upload || true", 30_000);
      const m = /\s(\d+)\s+\w+\s+\d+\s+[\d:]+\s+(\.outpost-upload-\S+)/.exec(ls.output);
      if (m && Number(m[1]) > 1024 * 1024) partial = `${m[2]} at ${(Number(m[1]) / 1048576).toFixed(1)} MiB`;
    }
    await v.kill();
    try {
      upload.kill("SIGKILL");
    } catch {
      // Already ended.
    }
    await upload.status;
    if (!partial) throw new Error("The upload never got under way in the guest");
    return `SIGKILL to QEMU with ${partial} of 64 MiB written and 1 mail queued`;
  });
  if (!cut) return s.notRun(MAIN_STEPS.slice(10), "no power cut");
  // That boot's config has neither a root under /home nor a device sensor: the drop-in narrowed the sandbox again.
  await s.run(MAIN_STEPS[10], () => {
    if (!tookTxt) throw new Error("The journal does not say that outpost.toml.txt was taken");
    if (!/ProtectHome=yes/.test(narrowed) || !/PrivateDevices=yes/.test(narrowed)) {
      throw new Error(`The sandbox was not narrowed back: ${narrowed || "not read"}`);
    }
    return Promise.resolve(`${narrowed}; ${tookTxt}`);
  });
  await t.startSink();
  try {
    v = await t.boot(board);
  } catch (e) {
    return s.notRun(MAIN_STEPS.slice(11), `no boot after the power cut: ${(e as Error).message}`);
  }
  await s.run(MAIN_STEPS[11], async () => {
    // deno-lint-ignore no-control-regex
    const text = (await v.consoleText()).replace(/\x1b\[[0-9;]*m/g, "");
    // The initramfs checks root (e2fsck, fsck.repair=yes), systemd-fsck the FAT partition; the kernel's ext4 lines
    // say whether the journal was replayed.
    const fsckLines = text.split("\n").filter((l) => /recovering journal|rootfs:|fsck|clean,/i.test(l))
      .map((l) => l.trim()).filter((l) => l.length < 200);
    const fsck = await v.exec(
      "dmesg | grep -E 'EXT4-fs \\(vda2\\)|FAT-fs \\(vda1\\)' | sed 's/^\\[[ 0-9.]*\\] //' | tail -n 3; " +
        "journalctl -b --no-pager -o cat -u 'systemd-fsck*' | grep -E 'vda|clean|files' | tail -n 3; " +
        "findmnt -no OPTIONS /; findmnt -no OPTIONS /boot/firmware",
      60_000,
    );
    if (!/(^|,)rw(,|$)/m.test(fsck.output)) throw new Error(`Root is not mounted read-write: ${fsck.output}`);
    if (/UNEXPECTED INCONSISTENCY|run fsck MANUALLY|errors=remount-ro.*remounted/i.test(text + fsck.output)) {
      throw new Error(`fsck found problems:\n${fsckLines.join("\n")}\n${fsck.output}`);
    }
    const initramfs = fsckLines.filter((l) => /rootfs:|recovering journal|clean,/i.test(l)).slice(-2);
    return [...initramfs, ...fsck.output.trim().split("\n").filter((l) => !/^rw,/.test(l))].join(" | ");
  });
  await s.run(MAIN_STEPS[12], async () => {
    await t.serviceActive(v);

    const nlst = await curl(["--user", `pi:${FTP_PASSWORD}`, "-l", `ftp://127.0.0.1:${board.ftpPort}/`]);
    const list = await curl([
      "--user",
      `pi:${FTP_PASSWORD}`,
      "-X",
      "LIST -a",
      `ftp://127.0.0.1:${board.ftpPort}/`,
    ]);
    if (nlst.code !== 0 || list.code !== 0) throw new Error(`listing failed: ${nlst.out}${list.out}`);
    if (nlst.out.includes(bigName) || list.out.includes(bigName) || list.out.includes(".outpost-upload-")) {
      throw new Error(`The interrupted upload is visible:\n${nlst.out}\n${list.out}`);
    }
    const left = await v.exec("ls -A /srv/ftp/pi | grep -c '^.outpost-upload-' || true", 30_000);
    return `listing: ${
      nlst.out.trim().split("\n").join(", ")
    }; hidden temp files left on the card: ${left.output.trim()}`;
  });
  await s.run(MAIN_STEPS[13], () => t.mailArrives(/queued before the power cut/));
  await s.run(MAIN_STEPS[14], async () => {
    await t.poweroff();
    await checkFilesystems(board.image, board.layout);
    return "e2fsck -fn and fsck.fat -n clean";
  });
  await t.stopSink();
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
