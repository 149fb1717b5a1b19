/**
 * Status as on the board (issue 13, items 1 and 2): the daemon runs from the generated unit as the `outpost` user
 * under the flags the prepare step derived (never -A), with the status page on loopback. `outpost status` is asked
 * by root, by a member of the daemon's group and by someone outside it; headless Chromium (Debian's `chromium`)
 * loads the page with live data and a day of history, the test checks the rendered DOM and saves a screenshot.
 */

import assert from "node:assert/strict";
import { fieldBundles, FieldDaemon, layOutBoard } from "./helpers/field_daemon.ts";
import { SKIP_FIELD } from "./helpers/field_user.ts";
import { findPeer, IN_CI, requirePeer } from "./helpers/peers.ts";
import { freePort } from "./helpers/test_util.ts";

const chromium = findPeer("chromium");

/** Runs `cmd` with a deadline; kills it (by its PID) when it overruns. */
async function runBounded(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
    cwd: opts.cwd,
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, opts.timeoutMs ?? 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function chromiumArgs(profile: string): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
  ];
}

/** A day of readings every 5 minutes: a slow wave for cpu, a warm spell for the freezer. */
function seededHistory(now: number): unknown {
  const cpu = [];
  const freezer = [];
  for (let i = 287; i >= 1; i--) {
    const at = now - i * 300_000;
    cpu.push({ at, value: Math.round((45 + 8 * Math.sin(i / 20)) * 10) / 10 });
    if (i < 200 || i > 230) freezer.push({ at, value: i < 24 ? -6 : -18 + Math.sin(i / 7) }); // a gap, then warm
  }
  return { v: 1, sensors: { cpu, freezer } };
}

Deno.test({
  name: "status field: outpost status over the socket (admin group yes, others no) and the page in Chromium",
  ignore: SKIP_FIELD,
  sanitizeResources: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-status-field-" });
    const ftpPort = freePort();
    const statusPort = freePort();
    const board = await layOutBoard(
      dir,
      `[device]
name = "pi-freezer"
board = "rpi4"
state_dir = "{{dir}}/var/lib/outpost"

[ftp]
host = "127.0.0.1"
port = ${ftpPort}
active = false
[ftp.passive]
ports = "${ftpPort + 1}-${ftpPort + 2}"

[alerts]
to = ["owner@example.com"]

[sensors.cpu]
type = "file"
path = "{{dir}}/sensors/cpu"
unit = "°C"
interval = "2s"

[sensors.freezer]
type = "file"
path = "{{dir}}/sensors/freezer"
unit = "°C"
decimals = 1
interval = "2s"

[[rules]]
sensor = "cpu"
above = 80

[[rules]]
sensor = "freezer"
above = -10
severity = "critical"

[status]
http = true
port = ${statusPort}
`,
    );
    await Deno.mkdir(`${dir}/sensors`, { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/sensors/cpu`, "47.3\n", { mode: 0o644 });
    await Deno.writeTextFile(`${dir}/sensors/freezer`, "-6.2\n", { mode: 0o644 });
    const state = `${dir}/var/lib/outpost`;
    await Deno.mkdir(state, { recursive: true });
    await Deno.writeTextFile(`${state}/history.json`, JSON.stringify(seededHistory(Date.now())));
    for (const p of [state, `${state}/history.json`]) await Deno.chown(p, board.user.uid, board.user.gid);

    const d = await FieldDaemon.start(board);
    const shots = await Deno.makeTempDir({ prefix: "outpost-status-shots-" });
    try {
      await d.waitReady();
      await d.waitFor("status http.listening");
      assert.equal(d.main?.argv.includes("-A") || d.main?.argv.includes("--allow-all"), false);
      assert.doesNotMatch(d.output, /NotCapable|PermissionDenied|socket\.failed|http\.failed/);
      const sock = `${state}/status.sock`;
      const st = await Deno.stat(sock);
      assert.equal(st.mode! & 0o777, 0o660);
      assert.equal(st.uid, board.user.uid);

      const bundles = await fieldBundles();
      const cli = (prefix: string[]) =>
        runBounded(prefix[0], [
          ...prefix.slice(1),
          `${bundles}/bin/deno`,
          "run",
          "--allow-all",
          `${bundles}/outpost.js`,
          "status",
          "--config",
          board.configPath,
        ], { env: { DENO_DIR: `${dir}/deno-dir`, NO_COLOR: "1", HOME: "/nonexistent" }, cwd: "/" });
      await Deno.mkdir(`${dir}/deno-dir`, { mode: 0o777 });
      await Deno.chmod(`${dir}/deno-dir`, 0o777);

      await t.step("root asks: text", async () => {
        // Wait (bounded) for the first readings.
        let r = await cli(["env"]);
        for (let i = 0; i < 100 && !/freezer\s+-6\.2 °C/.test(r.stdout); i++) {
          await new Promise((res) => setTimeout(res, 100));
          r = await cli(["env"]);
        }
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^outpost pi-freezer \(rpi4\): running since /);
        assert.match(r.stdout, /freezer_above\s+freezer > -10 °C\s+ALERT since /);
        assert.match(r.stdout, /Status page: http:\/\/127\.0\.0\.1:\d+\//);
      });

      await t.step("a member of the daemon's group may ask; others get a clear refusal", async () => {
        const nobody = 65534;
        const member = await cli([
          "setpriv",
          `--reuid=${nobody}`,
          `--regid=${nobody}`,
          `--groups=${board.user.gid}`,
          "--no-new-privs",
          "--",
        ]);
        assert.equal(member.code, 0, member.stderr);
        assert.match(member.stdout, /^outpost pi-freezer/);
        const other = await cli([
          "setpriv",
          `--reuid=${nobody}`,
          `--regid=${nobody}`,
          "--clear-groups",
          "--",
        ]);
        assert.equal(other.code, 4, other.stdout + other.stderr);
        assert.match(other.stderr, /permission denied on .*status\.sock/);
      });

      await t.step({
        name: "headless Chromium renders the page: sensors with day-long charts, rules, outbox",
        ignore: chromium === null && !IN_CI,
        fn: async () => {
          const browser = requirePeer("chromium");
          const url = `http://127.0.0.1:${statusPort}/`;
          const profile = await Deno.makeTempDir({ prefix: "outpost-chromium-" });
          try {
            const dom = await runBounded(browser, [...chromiumArgs(profile), "--dump-dom", url], {
              timeoutMs: 90_000,
            });
            assert.equal(dom.code, 0, dom.stderr);
            const html = dom.stdout;
            assert.match(html, /<title>pi-freezer: 1 ALERT<\/title>/);
            assert.match(
              html,
              /<section id="attention"[^>]*><div>ALERT freezer_above: freezer -6.2 °C &gt; -10 °C<\/div>/,
            );
            for (const s of ["cpu", "freezer"]) {
              const card =
                new RegExp(`<div class="sensor" id="sensor-${s}"[^]*?</svg></div>`).exec(html)?.[0] ?? "";
              assert.ok(card, `card for ${s}`);
              assert.match(card, /<polyline points="[^"]+"/, `${s} has a history line`);
              assert.match(card, /aria-label="[^"]*last 24h: min /);
            }
            // The freezer's history has a gap: two line segments; the live reading is on the card.
            const freezer = /id="sensor-freezer"[^]*?<\/svg>/.exec(html)![0];
            assert.equal(freezer.match(/<polyline/g)?.length, 2);
            assert.match(freezer, /<div class="value">-6\.2 °C<\/div>/);
            assert.match(html, /<tr data-rule="freezer_above">[^]*?class="state-alert">ALERT since /);
            assert.match(html, /<tr data-rule="cpu_above">[^]*?class="state-ok">OK</);
            assert.match(html, /<span id="outbox-queued">1<\/span> queued/);
            assert.doesNotMatch(html, /<script|pbkdf2|\[object |undefined|NaN/);

            const shot = `${shots}/status-phone.png`;
            const sr = await runBounded(browser, [
              ...chromiumArgs(profile),
              "--hide-scrollbars",
              "--window-size=412,1200",
              `--screenshot=${shot}`,
              url,
            ], { timeoutMs: 90_000 });
            assert.equal(sr.code, 0, sr.stderr);
            const png = await Deno.readFile(shot);
            assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
            assert.ok(png.length > 10_000, `a real page, not a blank: ${png.length} bytes`);
            const keep = Deno.env.get("OUTPOST_SCREENSHOT_DIR");
            if (keep) await Deno.copyFile(shot, `${keep}/status-phone.png`);
          } finally {
            await Deno.remove(profile, { recursive: true }).catch(() => {});
          }
        },
      });
    } finally {
      await d.stop();
      await Deno.remove(shots, { recursive: true }).catch(() => {});
    }
    try {
      // The history was saved on stop (one write), with the live readings in it; the socket is gone.
      const saved = JSON.parse(await Deno.readTextFile(`${state}/history.json`));
      assert.equal(saved.v, 1);
      assert.ok(saved.sensors.freezer.some((p: { value: number }) => p.value === -6.2));
      await assert.rejects(() => Deno.stat(`${state}/status.sock`), Deno.errors.NotFound);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
