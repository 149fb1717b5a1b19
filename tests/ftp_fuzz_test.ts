/**
 * A seeded, bounded fuzzer against one in-process FTP server over loopback: random and malformed command lines
 * for every verb in the command table (long, empty, `..`, NUL, CR inside, UTF-8 and invalid UTF-8, `%`, huge and
 * negative numbers), before and after login, PASV/EPSV/PORT/EPRT with transfers that are read, fed, abandoned or
 * aborted, Telnet IAC bytes, and abrupt disconnects mid-command and mid-transfer. After the storm the server must
 * still serve a normal session, no reply may have carried a raw CR/NUL or a host path, every session must be gone,
 * nothing may have appeared outside the root and no upload temp file may be left behind.
 *
 * Every loop is bounded and every reply is read with a timeout; a failure names the seed, the connection and the
 * last commands sent, so a run can be replayed.
 */
import assert from "node:assert/strict";
import { COMMANDS } from "../src/ftp/ftp_commands.ts";
import { UPLOAD_TEMP_PREFIX } from "../src/ftp/ftp_file_system.ts";
import { FtpControl, type FtpReply, PASS, readAllText, startFtp, USER } from "./helpers/ftp_fixture.ts";

const HOST = "127.0.0.1";
const SEED = Number(Deno.env.get("OUTPOST_FUZZ_SEED") ?? 0x5eed);
const CONNECTIONS = 40;
const COMMANDS_PER_CONNECTION = 120;
const WORKERS = 4;
const REPLY_TIMEOUT_MS = 10_000;

/** xorshift32: deterministic for a given seed. */
function makeRng(seed: number): { next(): number; int(n: number): number; pick<T>(a: readonly T[]): T } {
  let x = (seed >>> 0) || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    next,
    int: (n) => next() % n,
    pick: (a) => a[next() % a.length],
  };
}
type Rng = ReturnType<typeof makeRng>;

const enc = new TextEncoder();
const VERBS = Object.keys(COMMANDS);
const TRANSFER_VERBS = new Set(["RETR", "STOR", "APPE", "STOU", "LIST", "NLST", "MLSD"]);
const UPLOAD_VERBS = new Set(["STOR", "APPE", "STOU"]);

const NAMES = [
  "f.txt",
  "big.bin",
  "dir",
  "dir/g.txt",
  "new.bin",
  "link",
  "..",
  "../..",
  "/",
  "/..",
  "../secret.txt",
  "%2e%2e/secret.txt",
  "..%2f..%2fsecret.txt",
  "dir/../../secret.txt",
  "\\..\\secret.txt",
  "h\u00e9llo \u2713.txt",
  "-la",
  "-a dir",
  "*",
  ".",
  "~",
  "~root",
  "//etc//passwd",
];
const NUMBERS = [
  "0",
  "1",
  "-1",
  "-0",
  "99999999999999999999999",
  "18446744073709551616",
  "9007199254740993",
  "1e400",
  "NaN",
  "Infinity",
  "0x10",
  "+5",
  " 5",
  "5 5",
  "4294967296",
  "100000",
];

function randomText(r: Rng, max: number): string {
  const n = r.int(max + 1);
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(0x20 + r.int(0x5f));
  return s;
}

/** A random argument for `verb`, as bytes (so it can hold invalid UTF-8). */
function randomArg(r: Rng, verb: string, port: number): Uint8Array | string {
  switch (r.int(14)) {
    case 0:
      return "";
    case 1:
      return "a".repeat(r.int(700));
    case 2:
      return r.pick(NAMES) + "\0" + r.pick(NAMES);
    case 3:
      return r.pick(NAMES) + "\r" + r.pick(NAMES);
    case 4: {
      const b = new Uint8Array(1 + r.int(20));
      for (let i = 0; i < b.length; i++) {
        let v = r.int(256);
        if (v === 0x0a || v === 0x0d) v = 0xc3;
        b[i] = v;
      }
      return b;
    }
    case 5:
      return "%s%n%x%%" + randomText(r, 10);
    case 6:
      return r.pick(NUMBERS);
    case 7:
      return `127,0,0,1,${r.pick(NUMBERS)},${r.pick(NUMBERS)}`;
    case 8:
      return r.pick([
        `|1|127.0.0.1|${r.pick(NUMBERS)}|`,
        `|2|::1|${port}|`,
        "|||",
        "|1|10.0.0.1|2000|",
        "|9|x|1|",
        "ALL",
        "1",
        "2",
        "127,0,0,1,0,21",
        "10,0,0,1,8,0",
      ]);
    case 9:
      return `CHMOD ${r.pick(NUMBERS)} ${r.pick(NAMES)}`;
    case 10:
      return r.pick(["UTF8 ON", "UTF8 OFF", "MLST type;size;modify;perm;unique;", "MLST", "HELP", "X Y Z"]);
    case 11:
      return r.pick(["A", "I", "A N", "L 8", "E", "S", "F", "B", "P", "C", "TLS", "SSL"]);
    case 12:
      return randomText(r, 40);
    default:
      return verb === "HELP" ? r.pick(VERBS) : r.pick(NAMES);
  }
}

function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  const bytes = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let off = 0;
  for (const b of bytes) {
    out.set(b, off);
    off += b.length;
  }
  return out;
}

/** Closes a connection or listener, ignoring "already closed". */
function shut(c: { close(): void } | null | undefined): void {
  try {
    c?.close();
  } catch {
    // Already closed.
  }
}

/** Awaits `p`, or gives up after `ms` (resolving null) so a test step can never hang. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<null>((res) => {
        timer = setTimeout(() => res(null), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

interface Storm {
  base: string;
  replies: number;
  codes: Map<number, number>;
  problems: string[];
}

function checkReply(s: Storm, r: FtpReply, history: string[]): void {
  s.replies++;
  s.codes.set(r.code, (s.codes.get(r.code) ?? 0) + 1);
  for (const l of r.lines) {
    if (l.includes("\r") || l.includes("\0") || l.includes("\n")) {
      s.problems.push(`raw CR/LF/NUL in reply ${JSON.stringify(l)} after ${history.slice(-3).join(" ; ")}`);
    }
    if (l.includes(s.base)) s.problems.push(`host path in reply ${JSON.stringify(l)}`);
    if (!/^\d{3}[ -]/.test(r.lines[0])) s.problems.push(`malformed reply ${JSON.stringify(r.lines[0])}`);
  }
}

/** Drains a data connection with a bound, ignoring errors (the server may reset it). */
async function drain(data: Deno.Conn): Promise<void> {
  try {
    await within(readAllText(data, 8 << 20), REPLY_TIMEOUT_MS);
  } catch {
    // Reset or too much: either way the connection is closed by readAllText.
  } finally {
    shut(data);
  }
}

/** One fuzzing connection: `count` random commands; reconnects whenever the server closes the connection. */
async function fuzzConnection(s: Storm, port: number, r: Rng, id: number, count: number): Promise<void> {
  const history: string[] = [];
  let c: FtpControl | null = null;
  let data: Deno.Conn | null = null;
  let active: Deno.TcpListener | null = null;
  let pendingData: Promise<Deno.Conn | null> | null = null;
  const fail = (msg: string): never => {
    throw new Error(`seed ${SEED} connection ${id}: ${msg}\nlast commands:\n${history.slice(-8).join("\n")}`);
  };
  const open = async (): Promise<FtpControl> => {
    const conn = await FtpControl.connect(HOST, port);
    const g = await conn.replyOrNull(REPLY_TIMEOUT_MS);
    if (g === null) fail("the server closed the connection without a greeting");
    checkReply(s, g!, history);
    if (g!.code !== 220) fail(`greeting was ${g!.text}`);
    if (r.int(5) !== 0) {
      // Mostly logged in, so the post-login verbs get exercised too.
      history.push("<login>");
      for (const l of [`USER ${USER}`, `PASS ${PASS}`]) {
        const rep = await conn.replyOrNullAfter(l, REPLY_TIMEOUT_MS);
        if (rep === null) fail(`the server closed the connection after ${l.split(" ")[0]}`);
        checkReply(s, rep!, history);
      }
    }
    return conn;
  };
  /** Reads replies until the NOOP marker reply; null when the server closed the connection. */
  const sync = async (ctl: FtpControl): Promise<boolean> => {
    try {
      await ctl.send("NOOP\r\n");
    } catch {
      return false;
    }
    for (let i = 0; i < 10; i++) {
      let rep: FtpReply | null;
      try {
        rep = await ctl.replyOrNull(REPLY_TIMEOUT_MS);
      } catch (e) {
        return fail(`no reply: ${(e as Error).message}`);
      }
      if (rep === null) return false;
      checkReply(s, rep, history);
      if (rep.text === "200 NOOP ok.") return true;
    }
    return fail("the NOOP marker reply never came");
  };
  const dropData = (): void => {
    shut(data);
    data = null;
    if (pendingData) {
      const p = pendingData;
      pendingData = null;
      p.then(shut, () => {});
    }
  };
  try {
    for (let i = 0; i < count; i++) {
      c ??= await open();
      const roll = r.int(100);
      let line: Uint8Array;
      let verb = "";
      if (roll < 8) {
        line = enc.encode(r.int(2) ? `USER ${USER}\r\n` : `USER ${randomText(r, 12)}\r\n`);
        history.push(new TextDecoder().decode(line).trim());
        await c.send(line);
        line = enc.encode(r.int(4) ? `PASS ${PASS}\r\n` : `PASS ${randomText(r, 12)}\r\n`);
        verb = "PASS";
      } else if (roll < 11) {
        // Abrupt disconnect, maybe mid-command (half a line sent) or with a data connection open.
        history.push("<disconnect>");
        if (r.int(2)) await c.send(`${r.pick(VERBS)} ${r.pick(NAMES)}`).catch(() => {});
        c.close();
        c = null;
        dropData();
        continue;
      } else if (roll < 15) {
        // Telnet IAC sequences and raw bytes (no line ending inside), then a line ending.
        const n = 1 + r.int(30);
        const b = new Uint8Array(n);
        for (let k = 0; k < n; k++) {
          let v = r.int(3) === 0 ? r.pick([0xff, 0xf4, 0xf2, 0xfb, 0xfd, 0xfe, 0xfc]) : r.int(256);
          if (v === 0x0a) v = 0xff;
          b[k] = v;
        }
        line = concat(b, r.int(2) ? "\r\n" : "\n");
        verb = "<raw>";
      } else if (roll < 18) {
        line = concat(randomText(r, 8).replaceAll(" ", ""), " ", randomText(r, 30), "\r\n");
        verb = "<raw>";
      } else if (roll < 30) {
        verb = r.pick(["PASV", "EPSV", "PORT", "EPRT"]);
        if (verb === "PORT" || verb === "EPRT") {
          shut(active);
          active = Deno.listen({ hostname: HOST, port: 0 });
          const p = active.addr.port;
          const arg = r.int(4) === 0
            ? String(randomArg(r, verb, p))
            : verb === "PORT"
            ? `127,0,0,1,${p >> 8},${p & 255}`
            : `|1|127.0.0.1|${p}|`;
          line = enc.encode(`${verb} ${arg}\r\n`);
        } else {
          line = enc.encode(`${verb}${r.int(5) === 0 ? " " + String(randomArg(r, verb, 0)) : ""}\r\n`);
        }
      } else {
        verb = r.int(20) === 0 ? "X" + randomText(r, 6).replaceAll(" ", "") : r.pick(VERBS);
        if (verb === "QUIT" && r.int(3) !== 0) verb = "NOOP";
        if (r.int(4) === 0) verb = verb.toLowerCase();
        const arg = r.int(6) === 0 ? "" : randomArg(r, verb.toUpperCase(), 0);
        line = concat(verb, arg === "" ? "" : " ", arg, r.int(5) === 0 ? "\n" : "\r\n");
        verb = verb.toUpperCase();
      }
      history.push(JSON.stringify(new TextDecoder().decode(line)).slice(0, 120));
      try {
        await c.send(line);
      } catch {
        c.close();
        c = null;
        dropData();
        continue;
      }
      // The command's own reply (or replies, for PASS after USER). A line of only Telnet/control junk is
      // ignored by the server (it may precede an urgent ABOR), so raw lines are checked by the NOOP sync only.
      if (verb === "<raw>") {
        if (!(await sync(c))) {
          c.close();
          c = null;
          dropData();
        }
        continue;
      }
      let rep: FtpReply | null;
      try {
        rep = await c.replyOrNull(REPLY_TIMEOUT_MS);
        if (rep && verb === "PASS" && rep.code === 331) {
          checkReply(s, rep, history);
          rep = await c.replyOrNull(REPLY_TIMEOUT_MS);
        }
      } catch (e) {
        return fail(`no reply: ${(e as Error).message}`);
      }
      if (rep === null) {
        c.close();
        c = null;
        dropData();
        continue;
      }
      checkReply(s, rep, history);
      if ((verb === "PASV" && rep.code === 227) || (verb === "EPSV" && rep.code === 229)) {
        dropData();
        const m = verb === "PASV"
          ? /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(rep.text)
          : /\(\|\|\|(\d+)\|\)/.exec(rep.text);
        if (!m) fail(`unparsable passive reply ${rep.text}`);
        const dport = verb === "PASV" ? +m![1] * 256 + +m![2] : +m![1];
        if (r.int(5) !== 0) data = await Deno.connect({ hostname: HOST, port: dport });
      }
      if ((verb === "PORT" || verb === "EPRT") && rep.code === 200 && active) {
        dropData();
        pendingData = active.accept().catch(() => null);
      }
      if (TRANSFER_VERBS.has(verb) && rep.code >= 100 && rep.code < 200) {
        if (!data && pendingData) data = await within(pendingData, REPLY_TIMEOUT_MS);
        pendingData = null;
        const action = r.int(10);
        if (data && action < 5) {
          if (UPLOAD_VERBS.has(verb)) {
            const b = new Uint8Array(r.int(200_000));
            for (let k = 0; k < b.length; k += 97) b[k] = r.int(256);
            try {
              let off = 0;
              while (off < b.length) off += await data.write(b.subarray(off));
            } catch {
              // The server may have refused or reset it.
            }
            shut(data);
          } else {
            await drain(data);
          }
        } else if (action < 7) {
          history.push("<close data>");
          shut(data);
        } else if (action < 9) {
          history.push("ABOR");
          await c.send(r.int(2) ? "ABOR\r\n" : concat(new Uint8Array([0xff, 0xf4, 0xff, 0xf2]), "ABOR\r\n"));
          shut(data);
        } else {
          history.push("<disconnect mid-transfer>");
          c.close();
          c = null;
          dropData();
          continue;
        }
        data = null;
      }
      if (!(await sync(c))) {
        c.close();
        c = null;
        dropData();
      }
    }
  } finally {
    c?.close();
    dropData();
    shut(active);
  }
}

async function listNames(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

async function findTempFiles(dir: string, depth = 0): Promise<string[]> {
  if (depth > 40) return [];
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith(UPLOAD_TEMP_PREFIX)) out.push(`${dir}/${e.name}`);
    if (e.isDirectory && !e.isSymlink) out.push(...await findTempFiles(`${dir}/${e.name}`, depth + 1));
  }
  return out;
}

Deno.test("fuzz: a seeded storm of hostile FTP clients leaves the server serving and the disk clean", async () => {
  const fx = await startFtp({
    server: {
      maxLoginFailures: 1_000_000,
      dataTimeoutMs: 1000,
      maxSessionsPerIp: 100,
      maxUnauthenticated: 100,
      maxUnauthenticatedPerIp: 100,
    },
  });
  try {
    await Deno.writeTextFile(`${fx.base}/secret.txt`, "secret");
    await Deno.writeTextFile(`${fx.root}/f.txt`, "hello\nworld\n");
    await Deno.writeFile(`${fx.root}/big.bin`, new Uint8Array(1 << 20).fill(7));
    await Deno.mkdir(`${fx.root}/dir`);
    await Deno.writeTextFile(`${fx.root}/dir/g.txt`, "g");
    await Deno.symlink(`${fx.base}/secret.txt`, `${fx.root}/link`);
    const outsideBefore = await listNames(fx.base);

    const storm: Storm = { base: fx.base, replies: 0, codes: new Map(), problems: [] };
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let id = next++; id < CONNECTIONS; id = next++) {
        const r = makeRng(SEED * 7919 + id * 104729);
        await fuzzConnection(storm, fx.port, r, id, COMMANDS_PER_CONNECTION);
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, () => worker()));
    if (Deno.env.get("OUTPOST_FUZZ_STATS")) {
      console.log(
        storm.replies,
        [...storm.codes].sort((a, b) => a[0] - b[0]),
      );
    }
    assert.deepEqual(storm.problems.slice(0, 10), [], `seed ${SEED}`);
    assert.ok(storm.replies > CONNECTIONS * 10, `only ${storm.replies} replies`);

    // Every session ends once its client left.
    for (let i = 0; i < 200 && fx.server.sessionCount > 0; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(fx.server.sessionCount, 0, "sessions left behind after all clients left");

    // Nothing outside the root changed; no upload temp file is left.
    assert.deepEqual(await listNames(fx.base), outsideBefore);
    assert.equal(await Deno.readTextFile(`${fx.base}/secret.txt`), "secret");
    assert.deepEqual(await findTempFiles(fx.root), []);

    // A normal session still works.
    await Deno.writeTextFile(`${fx.root}/final.txt`, "still serving\n");
    await Deno.chmod(fx.root, 0o755);
    await Deno.chmod(`${fx.root}/final.txt`, 0o644);
    const c = await FtpControl.login(HOST, fx.port);
    try {
      assert.equal((await c.cmd("TYPE I")).code, 200);
      assert.equal((await c.cmd("CWD /")).code, 250);
      assert.match((await c.cmd("PWD")).text, /^257 "\/"/);
      let { data } = await c.pasvConnect();
      assert.equal((await c.cmd("LIST")).code, 150);
      assert.match(await readAllText(data), /final\.txt/);
      assert.equal((await c.reply()).code, 226);
      ({ data } = await c.pasvConnect());
      assert.equal((await c.cmd("RETR final.txt")).code, 150);
      assert.equal(await readAllText(data), "still serving\n");
      assert.equal((await c.reply()).code, 226);
      assert.equal((await c.cmd("QUIT")).code, 221);
    } finally {
      c.close();
    }
    for (let i = 0; i < 200 && fx.server.sessionCount > 0; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(fx.server.sessionCount, 0);
  } finally {
    await fx.close();
  }
});
