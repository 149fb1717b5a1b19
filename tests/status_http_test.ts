/**
 * The status page, /metrics and the login (issue 13, item 2), against an in-process daemon on loopback. The
 * browser test (headless Chromium) is status_browser_test.ts.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { hashPassword } from "../src/config/password.ts";
import { OutpostDaemon } from "../src/daemon/outpost_daemon.ts";
import { setLogSink } from "../src/log/logger.ts";
import { SensorHistory } from "../src/status/sensor_history.ts";
import { isLoopbackHost, readStatusConfig } from "../src/status/status_config.ts";
import { Section } from "../src/config/section.ts";
import { sensorChart } from "../src/status/status_page.ts";
import { freePort } from "./helpers/test_util.ts";

setLogSink(() => {});

async function start(dir: string, status: string, ftpHost = "127.0.0.1") {
  const hash = await hashPassword("ftp-pw", 1000);
  await Deno.mkdir(`${dir}/root`, { recursive: true });
  await Deno.writeTextFile(`${dir}/cpu`, "41.5\n");
  const text = `
[device]
name = "pi-http"
state_dir = "state"
[ftp]
host = "${ftpHost}"
port = ${freePort()}
[[ftp.users]]
name = "alice"
password_hash = "${hash}"
root = "root"
[alerts]
to = ["owner@example.com"]
[sensors.cpu]
type = "file"
path = "cpu"
unit = "°C"
interval = "1h"
[[rules]]
sensor = "cpu"
above = 80
[status]
${status}
`;
  await Deno.writeTextFile(`${dir}/outpost.toml`, text);
  return await OutpostDaemon.start(parseConfig(text, `${dir}/outpost.toml`));
}

async function get(
  url: string,
  auth?: string,
): Promise<{ status: number; type: string; body: string; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (auth) headers.authorization = `Basic ${btoa(auth)}`;
  const r = await fetch(url, { headers });
  return {
    status: r.status,
    type: r.headers.get("content-type") ?? "",
    body: await r.text(),
    headers: r.headers,
  };
}

Deno.test("status http: off by default; loopback page, metrics and json without login", async () => {
  const dir = await Deno.makeTempDir();
  const off = await start(dir, "");
  try {
    assert.equal(off.status?.httpUrl, null);
  } finally {
    await off.stop(0);
  }
  const port = freePort();
  const d = await start(dir, `http = true\nport = ${port}`);
  try {
    const url = d.status!.httpUrl!;
    assert.equal(url, `http://127.0.0.1:${port}/`);
    for (let i = 0; i < 200; i++) {
      if (JSON.parse((await get(`${url}status.json`)).body).sensors[0].value !== null) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const page = await get(url);
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    assert.match(page.body, /<title>pi-http: all OK<\/title>/);
    assert.match(
      page.body,
      /<svg class="chart"[^>]*aria-label="cpu, last 24h: min 41.5 °C, max 41.5 °C, 1 points"/,
    );
    assert.match(page.body, /data-rule="cpu_above"/);
    assert.ok(
      !/<script|https?:\/\/(?!127)/.test(page.body.replace(/href="[^"]*"/g, "")),
      "no script, no CDN",
    );
    assert.ok(!page.body.includes("pbkdf2"));
    assert.doesNotMatch(page.body, /\[object |undefined|NaN/);
    assert.match(page.body, /cpu &gt; 80 °C <span class="muted">warning/);
    assert.ok(!page.body.includes("config-problems"));

    const m = await get(`${url}metrics`);
    assert.equal(m.status, 200);
    assert.equal(m.type, "text/plain; version=0.0.4; charset=utf-8");
    assert.match(m.body, /^# HELP outpost_build_info /m);
    assert.match(m.body, /^outpost_sensor_value\{sensor="cpu",type="file",unit="°C"\} 41\.5$/m);
    assert.match(
      m.body,
      /^outpost_rule_state\{rule="cpu_above",sensor="cpu",severity="warning",state="ok"\} 1$/m,
    );
    assert.match(
      m.body,
      /^outpost_rule_state\{rule="cpu_above",sensor="cpu",severity="warning",state="alert"\} 0$/m,
    );
    assert.match(m.body, /^outpost_ftp_sessions 0$/m);
    assert.match(m.body, /^outpost_outbox_messages\{state="queued"\} 0$/m);
    assert.match(m.body, /^outpost_mail_deliveries_total\{result="delivered"\} 0$/m);
    // Every sample line belongs to a family declared with HELP and TYPE.
    const declared = new Set([...m.body.matchAll(/^# TYPE (\S+) (gauge|counter)$/gm)].map((x) => x[1]));
    for (const line of m.body.split("\n").filter((l) => l && !l.startsWith("#"))) {
      assert.ok(declared.has(line.split(/[{ ]/)[0]), line);
    }

    const j = await get(`${url}status.json`);
    assert.equal(JSON.parse(j.body).daemon.name, "pi-http");
    assert.equal((await get(`${url}nope`)).status, 404);
    const post = await fetch(url, { method: "POST", body: "x" });
    await post.body?.cancel();
    assert.equal(post.status, 405);
  } finally {
    await d.stop(0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status http: with a login configured every path needs it; [status] user and FTP accounts work", async () => {
  const dir = await Deno.makeTempDir();
  const hash = await hashPassword("page-pw", 1000);
  const port = freePort();
  const d = await start(
    dir,
    `http = true\nport = ${port}\nuser = "admin"\npassword_hash = "${hash}"`,
  );
  try {
    const url = `http://127.0.0.1:${port}/`;
    const anon = await get(url);
    assert.equal(anon.status, 401);
    assert.match(anon.headers.get("www-authenticate") ?? "", /^Basic realm="outpost status"/);
    assert.ok(!anon.body.includes("pi-http"));
    assert.equal((await get(`${url}metrics`)).status, 401);
    assert.equal((await get(url, "admin:wrong")).status, 401);
    assert.equal((await get(url, "admin:page-pw")).status, 200);
    assert.equal((await get(`${url}metrics`, "admin:page-pw")).status, 200);
    assert.equal((await get(url, "alice:ftp-pw")).status, 200);
    assert.equal((await get(url, "alice:nope")).status, 401);
  } finally {
    await d.stop(0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status config: beyond loopback without any login is a config problem", () => {
  for (const h of ["127.0.0.1", "127.3.0.1", "::1", "[::1]", "localhost"]) {
    assert.equal(isLoopbackHost(h), true, h);
  }
  for (const h of ["0.0.0.0", "::", "192.168.1.20", "pi.local"]) assert.equal(isLoopbackHost(h), false, h);
  const problems: string[] = [];
  readStatusConfig(new Section({ http: true, host: "0.0.0.0" }, "status", problems), "/var/lib/outpost", 0);
  assert.equal(problems.length, 1);
  assert.match(problems[0], /^status.host: "0.0.0.0" is beyond loopback, so the page needs a login/);
  const ok: string[] = [];
  const cfg = readStatusConfig(
    new Section({ http: true, host: "0.0.0.0" }, "status", ok),
    "/var/lib/outpost",
    1,
  );
  assert.deepEqual(ok, []);
  assert.equal(cfg.socket, "/var/lib/outpost/status.sock");
  const bad: string[] = [];
  readStatusConfig(new Section({ socket_mode: "0666", user: "admin" }, "status", bad), "/x", 0);
  assert.deepEqual(bad, [
    "status.socket_mode: must not give access to others (the last digit must be 0)",
    "status.password_hash: user and password_hash go together: set both or neither",
  ]);
});

Deno.test("sensor history: bounded ring, one point per slot, old points fall out, saved and loaded", () => {
  const h = new SensorHistory(24 * 3_600_000, 288);
  const t0 = Date.UTC(2026, 0, 1);
  for (let i = 0; i < 48 * 60 * 2; i++) h.record("cpu", t0 + i * 30_000, i); // 48 h of 30 s readings
  const now = t0 + 48 * 3_600_000;
  const pts = h.points("cpu", now);
  assert.equal(pts.length, 288);
  assert.ok(pts[0].at > now - 24 * 3_600_000);
  assert.equal(pts.at(-1)!.value, 48 * 60 * 2 - 1);
  const h2 = new SensorHistory(24 * 3_600_000, 288);
  h2.load(JSON.parse(JSON.stringify(h.save(now))), ["cpu"]);
  assert.deepEqual(h2.points("cpu", now), pts);
  h2.load({ v: 1, sensors: { gone: [{ at: now, value: 1 }] } }, ["cpu"]);
  assert.deepEqual(h2.sensors(), ["cpu"]);
});

Deno.test("sensor chart: a gap breaks the line; thresholds are dashed lines; text is escaped", () => {
  const now = Date.UTC(2026, 0, 1, 12);
  const pts = [0, 1, 2, 50, 51].map((i) => ({ at: now - 24 * 3_600_000 + (i + 1) * 300_000, value: i }));
  const svg = sensorChart("<b>", "°C", pts, [40], now, 24 * 3_600_000);
  assert.equal(svg.match(/<polyline/g)?.length, 2);
  assert.equal(svg.match(/class="limit"/g)?.length, 1);
  assert.ok(!svg.includes("<b>"));
});

Deno.test("status http: a reload that turns the page on starts it; one that turns it off stops it", async () => {
  const dir = await Deno.makeTempDir();
  const d = await start(dir, "");
  try {
    assert.equal(d.status?.httpUrl, null);
    const port = freePort();
    const text = (await Deno.readTextFile(`${dir}/outpost.toml`)).replace(
      "[status]\n",
      `[status]\nhttp = true\nport = ${port}\n`,
    );
    await d.reload(parseConfig(text, `${dir}/outpost.toml`));
    assert.equal(d.status?.httpUrl, `http://127.0.0.1:${port}/`);
    assert.equal((await get(`http://127.0.0.1:${port}/metrics`)).status, 200);
    await d.reload(parseConfig(text.replace("http = true", "http = false"), `${dir}/outpost.toml`));
    assert.equal(d.status?.httpUrl, null);
    await assert.rejects(() => fetch(`http://127.0.0.1:${port}/`));
    // The socket came back after each restart.
    assert.ok((await Deno.stat(`${dir}/state/status.sock`)).isSocket);
  } finally {
    await d.stop(0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status http: a password guesser is banned after 5 failures, even in parallel and even with the right password next", async () => {
  const dir = await Deno.makeTempDir();
  const hash = await hashPassword("page-pw", 1000);
  const port = freePort();
  const d = await start(dir, `http = true\nport = ${port}\nuser = "admin"\npassword_hash = "${hash}"`);
  try {
    const url = `http://127.0.0.1:${port}/`;
    const guesses = await Promise.all(Array.from({ length: 8 }, (_, i) => get(url, `admin:guess${i}`)));
    const codes = guesses.map((g) => g.status);
    assert.equal(codes.filter((c) => c === 401).length, 5, `only 5 guesses are checked: ${codes}`);
    assert.ok(codes.every((c) => c === 401 || c === 429), `${codes}`);
    const right = await get(url, "admin:page-pw");
    assert.equal(right.status, 429, "banned: the right password is not even checked");
    assert.match(right.headers.get("retry-after") ?? "", /^\d+$/);
  } finally {
    await d.stop(0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status listener: idle connections are closed at the deadline; per-address and total caps hold; bad heads get 400/431", async () => {
  const { StatusListener } = await import("../src/status/status_listener.ts");
  const l = await StatusListener.start(
    "127.0.0.1",
    0,
    () => Promise.resolve(new Response("ok\n")),
    { timeoutMs: 400, maxPerAddress: 2, maxConnections: 3 },
  );
  const held: Deno.TcpConn[] = [];
  const closedWithin = async (c: Deno.TcpConn, ms: number) => {
    const t = setTimeout(() => c.close(), ms);
    try {
      return (await c.read(new Uint8Array(64))) === null;
    } catch {
      return false; // our own close: it was still open
    } finally {
      clearTimeout(t);
    }
  };
  try {
    for (let i = 0; i < 2; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }));
    // A third from the same address is closed at once; the two idle ones at the deadline.
    const third = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    assert.ok(await closedWithin(third, 300), "a connection past the per-address cap was kept");
    for (const c of held) assert.ok(await closedWithin(c, 2000), "an idle connection outlived the deadline");
    // Then a real request is served, with connection: close.
    const r = await fetch(`http://127.0.0.1:${l.addr.port}/x`);
    assert.equal(await r.text(), "ok\n");
    assert.equal(r.headers.get("connection"), "close");
    // A bad request line and an overlong header line get 400 and 431.
    for (
      const [raw, code] of [["NONSENSE\r\n\r\n", "400"], [
        `GET / HTTP/1.1\r\nx: ${"a".repeat(9000)}\r\n\r\n`,
        "431",
      ]]
    ) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
      await c.write(new TextEncoder().encode(raw));
      const buf = new Uint8Array(256);
      const n = await c.read(buf);
      assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), new RegExp(`^HTTP/1\\.1 ${code} `));
      c.close();
    }
  } finally {
    for (const c of held) {
      try {
        c.close();
      } catch {
        // Closed by the server.
      }
    }
    await l.close();
  }
});
