// End to end on loopback: a fake sysfs tree whose values the test changes, the real AlertMonitor, the durable
// Outbox and DeliveryWorker, and a real SMTP server (Debian's python3-aiosmtpd) that writes each message it
// accepts to a folder as JSON (subject decoded by Python's email package).
import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { Section } from "../src/config/section.ts";
import { readAlertsConfig } from "../src/alerts/alerts_config.ts";
import { type AlertMailer, AlertMonitor } from "../src/alerts/monitor.ts";
import { Outbox } from "../src/smtp/outbox.ts";
import { DeliveryWorker } from "../src/smtp/delivery_worker.ts";
import { readSmtpConfig } from "../src/smtp/smtp_config.ts";
import { setLogSink } from "../src/log/logger.ts";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";

setLogSink(() => {});

const SERVER_PY = `
import email, email.policy, json, os, socket, sys, threading, time
from aiosmtpd.controller import Controller
port, out = int(sys.argv[1]), sys.argv[2]
if port == 0:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
class Handler:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        Handler.n += 1
        name = "%020d-%d-%04d" % (time.time_ns(), os.getpid(), Handler.n)
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            json.dump({"subject": str(msg["subject"]), "to": envelope.rcpt_tos,
                       "text": body.get_content() if body else ""}, f)
        os.rename(os.path.join(out, name + ".tmp"), os.path.join(out, name + ".json"))
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=port)
c.start()
print("READY", port, flush=True)
threading.Event().wait()
`;

/** Python with aiosmtpd importable, or null. */
function aiosmtpdPython(): string | null {
  const py = findPeer(SYSTEM_PYTHON);
  if (py === null) return null;
  const r = new Deno.Command(py, { args: ["-c", "import aiosmtpd"], stdout: "null", stderr: "null" })
    .outputSync();
  return r.success ? py : null;
}
const PYTHON = aiosmtpdPython();

interface Mail {
  subject: string;
  to: string[];
  text: string;
}

class SmtpSink {
  constructor(readonly child: Deno.ChildProcess, readonly port: number) {}

  static async start(script: string, maildir: string, port = 0): Promise<SmtpSink> {
    if (PYTHON === null) {
      throw new Error("Interop peer not found: /usr/bin/python3 with aiosmtpd (python3-aiosmtpd).");
    }
    const child = new Deno.Command(PYTHON, {
      args: [script, String(port), maildir],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.getReader();
    let text = "";
    try {
      for (let i = 0; i < 100 && !text.includes("\n"); i++) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    const m = /READY (\d+)/.exec(text);
    if (!m) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`aiosmtpd did not start: ${JSON.stringify(text)}`);
    }
    return new SmtpSink(child, Number(m[1]));
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.child.status;
  }
}

async function mails(dir: string): Promise<Mail[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".json")) names.push(e.name);
  names.sort();
  return await Promise.all(
    names.map(async (n) => {
      const m = JSON.parse(await Deno.readTextFile(`${dir}/${n}`)) as Mail;
      return { ...m, text: m.text.replaceAll("\r\n", "\n") };
    }),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; every wait is bounded. */
async function waitUntil(
  what: string,
  check: () => Promise<boolean> | boolean,
  limitMs = 20_000,
): Promise<void> {
  for (let waited = 0; waited < limitMs; waited += 50) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`Timed out waiting for ${what}.`);
}

interface Rig {
  dir: string;
  maildir: string;
  script: string;
  temp: string;
  probe: string;
  sink: SmtpSink | null;
  port: number;
  outbox: Outbox;
  worker: DeliveryWorker;
  mailer: AlertMailer;
  monitor: AlertMonitor | null;
  /** monitor.samples at each enqueue, with the subject. */
  enqueued: { samples: number; subject: string }[];
  startMonitor(): Promise<AlertMonitor>;
  samples(): number;
  waitSamples(n: number): Promise<void>;
  mails(): Promise<Mail[]>;
  close(): Promise<void>;
}

async function rig(extra: { rule?: string; startServer?: boolean } = {}): Promise<Rig> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-alerts-e2e-" });
  const maildir = `${dir}/mail`;
  await Deno.mkdir(maildir);
  const script = `${dir}/smtp_sink.py`;
  await Deno.writeTextFile(script, SERVER_PY);
  const zone = `${dir}/sys/class/thermal/thermal_zone0`;
  await Deno.mkdir(zone, { recursive: true });
  await Deno.writeTextFile(`${zone}/type`, "cpu-thermal\n");
  const temp = `${zone}/temp`;
  await Deno.writeTextFile(temp, "45000\n");
  const w1 = `${dir}/sys/bus/w1/devices/28-0316a2795aff`;
  await Deno.mkdir(w1, { recursive: true });
  const probe = `${w1}/w1_slave`;
  await Deno.writeTextFile(
    probe,
    "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=-18125\n",
  );

  let sink: SmtpSink | null = null;
  let port: number;
  if (extra.startServer === false) {
    // Reserve a port nobody listens on yet; the server is started on it later.
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    port = (l.addr as Deno.NetAddr).port;
    l.close();
  } else {
    sink = await SmtpSink.start(script, maildir);
    port = sink.port;
  }
  const problems: string[] = [];
  const smtp = readSmtpConfig(
    new Section(
      { host: "127.0.0.1", port, security: "none", from: "outpost@pi-e2e.example" },
      "smtp",
      problems,
    ),
    { name: "pi-e2e" },
  )!;
  assert.deepEqual(problems, []);
  const outbox = await Outbox.open({
    dir: `${dir}/outbox`,
    maxAgeMs: 86_400_000,
    maxBytes: 1 << 20,
    maxMessageBytes: 1 << 16,
    retryMinMs: 100,
    retryMaxMs: 300,
    pollMs: 100,
  });
  const worker = new DeliveryWorker(outbox, { ...smtp, connectTimeoutMs: 1000, replyTimeoutMs: 5000 }, {
    pollMs: 100,
    random: () => 0.5,
  });
  worker.start();

  const cfg = readAlertsConfig(
    new Section(
      parseToml(`
[alerts]
to = ["owner@example.com"]
interval = "200ms"
sysfs_root = "${dir}"
remind_every = "0s"
cooldown = "0s"
fail_after = 2
[sensors.soc]
type = "thermal"
zone = "cpu-thermal"
[sensors.freezer]
type = "w1"
id = "28-0316a2795aff"
decimals = 1
[[rules]]
sensor = "soc"
above = 70
clear_at = 60
${extra.rule ?? ""}
[[rules]]
sensor = "freezer"
above = -10
clear_at = -12
severity = "critical"
`),
      "",
      problems,
    ),
  );
  assert.deepEqual(problems, []);

  const r: Rig = {
    dir,
    maildir,
    script,
    temp,
    probe,
    sink,
    port,
    outbox,
    worker,
    monitor: null,
    enqueued: [],
    mailer: {
      enqueue: async (msg, opts) => {
        r.enqueued.push({ samples: r.samples(), subject: msg.subject });
        const id = await outbox.enqueue(msg, opts);
        worker.kick();
        return id;
      },
      deliveryFailing: () => worker.status().failing,
    },
    async startMonitor() {
      const m = await AlertMonitor.open({
        config: cfg,
        mailer: r.mailer,
        stateFile: `${dir}/alerts.json`,
        host: "pi-e2e",
        board: "rpi4",
      });
      m.start();
      r.monitor = m;
      return m;
    },
    samples: () => r.monitor?.samples ?? 0,
    async waitSamples(n: number) {
      const target = r.samples() + n;
      await waitUntil(`${n} more samples`, () => r.samples() >= target);
    },
    mails: () => mails(maildir),
    async close() {
      await r.monitor?.stop();
      await worker.stop();
      await r.sink?.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
  return r;
}

const subjects = async (r: Rig) => (await r.mails()).map((m) => m.subject);
const IGNORE = skipWithout(PYTHON);

Deno.test({
  name: "e2e: exactly one alert within 3 intervals, no flood while high, one recovery",
  ignore: IGNORE,
  fn: async () => {
    const r = await rig();
    try {
      await r.startMonitor();
      await r.waitSamples(4);
      const before = r.samples();
      await Deno.writeTextFile(r.temp, "85250\n");
      await waitUntil("the alert mail", async () => (await r.mails()).length >= 1);
      assert.equal(r.enqueued.length, 1);
      // Each poll samples both sensors: 3 intervals = at most 6 samples (+2 for the poll in progress).
      assert.ok(r.enqueued[0].samples - before <= 8, `alert after ${r.enqueued[0].samples - before} samples`);
      await r.waitSamples(20);
      assert.deepEqual(await subjects(r), [
        "[outpost pi-e2e] ALERT soc is 85.25 °C, above the 70 °C limit (warning)",
      ]);
      const [alert] = await r.mails();
      assert.deepEqual(alert.to, ["owner@example.com"]);
      assert.match(alert.text, /soc is 85\.25 °C, above the 70 °C limit/);
      await Deno.writeTextFile(r.temp, "65000\n");
      await r.waitSamples(6);
      assert.equal((await r.mails()).length, 1, "65 °C is above clear_at = 60: still alerting (hysteresis)");
      await Deno.writeTextFile(r.temp, "52000\n");
      await waitUntil("the recovery mail", async () => (await r.mails()).length >= 2);
      await r.waitSamples(10);
      const s = await subjects(r);
      assert.equal(s.length, 2);
      assert.match(s[1], /^\[outpost pi-e2e\] RECOVERED soc is 52 °C again, after \d+s$/);
      assert.ok(r.monitor!.store.writes <= 4, `state written ${r.monitor!.store.writes} times`);
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "e2e: reminders come as configured (doubling), never a second alert",
  ignore: IGNORE,
  fn: async () => {
    const r = await rig({ rule: 'remind_every = "400ms"\nremind_backoff = true' });
    try {
      await Deno.writeTextFile(r.temp, "90000\n");
      await r.startMonitor();
      await waitUntil(
        "two reminders",
        async () => (await subjects(r)).filter((s) => s.includes("REMINDER")).length >= 2,
      );
      const s = await subjects(r);
      assert.equal(s.filter((x) => x.includes(" ALERT ")).length, 1);
      assert.match(s[0], /ALERT soc is 90 °C, above the 70 °C limit/);
      assert.match(s[1], /REMINDER soc is 90 °C, above the 70 °C limit for \d+s/);
      const texts = (await r.mails()).map((m) => m.text);
      assert.match(texts[1], /Reminder number 1\./);
      assert.match(texts[2], /Reminder number 2\./);
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "e2e: SMTP server down during the alert, then up: alert delivered, later events as one digest",
  ignore: IGNORE,
  fn: async () => {
    const r = await rig({ startServer: false });
    try {
      await r.startMonitor();
      await r.waitSamples(2);
      await Deno.writeTextFile(r.temp, "88000\n");
      await waitUntil("delivery to fail", () => r.worker.status().failing && r.enqueued.length === 1);
      // The alert was enqueued before the worker knew delivery fails; the first event seen while it fails
      // (this recovery) is still enqueued at once, the later ones go into the digest.
      await Deno.writeTextFile(r.temp, "50000\n");
      await waitUntil("the recovery to be enqueued", () => r.enqueued.length === 2);
      const digestLength = () => r.monitor!.snapshot().digest.events.length;
      await Deno.writeTextFile(r.temp, "91000\n");
      await waitUntil("the second alert event", () => digestLength() >= 1);
      await Deno.writeTextFile(r.temp, "49000\n");
      await waitUntil("the second recovery event", () => digestLength() >= 2);
      await Deno.writeTextFile(r.temp, "92000\n");
      await waitUntil("the third alert event", () => digestLength() >= 3);
      assert.equal(r.enqueued.length, 2, "nothing else was enqueued while failing");
      assert.equal((await r.mails()).length, 0);
      r.sink = await SmtpSink.start(r.script, r.maildir, r.port);
      await waitUntil("alert, recovery and digest mails", async () => (await r.mails()).length >= 3);
      await r.waitSamples(6);
      const got = await r.mails();
      assert.deepEqual(got.map((m) => m.subject).slice(0, 2).map((s) => s.replace(/ after \d+s$/, "")), [
        "[outpost pi-e2e] ALERT soc is 88 °C, above the 70 °C limit (warning)",
        "[outpost pi-e2e] RECOVERED soc is 50 °C again,",
      ]);
      assert.equal(got.length, 3);
      assert.equal(got[2].subject, "[outpost pi-e2e] DIGEST 3 alert event(s) while mail was down");
      assert.match(got[2].text, /ALERT soc 91 °C > 70 °C/);
      assert.match(got[2].text, /RECOVERED soc 49 °C/);
      assert.match(got[2].text, /ALERT soc 92 °C > 70 °C/);
      assert.match(got[2].text, /First seen: .*\nLast seen: /);
      assert.match(got[2].text, /Current state:\n {2}soc_above: ALERT since .* \(soc 92 °C\)/);
      assert.equal(await r.outbox.pendingCount(), 0);
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "e2e: monitor stopped and restarted during a standing alert: no duplicate, recovery still sent",
  ignore: IGNORE,
  fn: async () => {
    const r = await rig();
    try {
      await Deno.writeTextFile(r.temp, "86000\n");
      const first = await r.startMonitor();
      await waitUntil("the alert mail", async () => (await r.mails()).length >= 1);
      await first.stop();
      r.monitor = null;
      await r.startMonitor();
      await r.waitSamples(12);
      assert.equal((await r.mails()).length, 1, "no duplicate alert after the restart");
      await Deno.writeTextFile(r.temp, "40000\n");
      await waitUntil("the recovery mail", async () => (await r.mails()).length >= 2);
      await r.waitSamples(6);
      const s = await subjects(r);
      assert.equal(s.length, 2);
      assert.match(s[0], /ALERT soc is 86 °C/);
      assert.match(s[1], /RECOVERED soc is 40 °C/);
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "e2e: garbage and missing sensor files raise a sensor error; the monitor keeps running",
  ignore: IGNORE,
  fn: async () => {
    const r = await rig();
    try {
      await r.startMonitor();
      await r.waitSamples(4);
      await Deno.writeTextFile(r.probe, "garbage\x00\xff\n");
      await waitUntil("the sensor error mail", async () => (await r.mails()).length >= 1);
      const [err] = await r.mails();
      assert.match(err.subject, /^\[outpost pi-e2e\] SENSOR ERROR freezer: DS18B20 freezer /);
      await Deno.remove(r.probe);
      await r.waitSamples(6);
      assert.equal((await r.mails()).length, 1, "still failing: no second error mail");
      // The other sensor keeps working meanwhile.
      await Deno.writeTextFile(r.temp, "80000\n");
      await waitUntil("the soc alert", async () => (await subjects(r)).some((s) => s.includes("ALERT soc")));
      await Deno.writeTextFile(
        r.probe,
        "5e ff 55 05 7f a5 a5 66 bd : crc=bd YES\n5e ff 55 05 7f a5 a5 66 bd t=-3000\n",
      );
      await waitUntil("sensor ok and freezer alert", async () => (await r.mails()).length >= 4);
      await r.waitSamples(6);
      const s = await subjects(r);
      assert.equal(s.length, 4);
      assert.ok(s.includes("[outpost pi-e2e] SENSOR OK freezer is -3 °C"), s.join("\n"));
      assert.ok(
        s.includes("[outpost pi-e2e] ALERT freezer is -3 °C, above the -10 °C limit (critical)"),
        s.join("\n"),
      );
    } finally {
      await r.close();
    }
  },
});
