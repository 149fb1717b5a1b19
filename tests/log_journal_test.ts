// Journald priority prefixes (issue 13, item 3): `<N>` per line when stdout is the journal.
import assert from "node:assert/strict";
import { journalStreamMatches, Logger, setJournalMode, setLogSink } from "../src/log/logger.ts";

Deno.test("logger: <6>/<4>/<3> prefixes in journal mode, warn:/error: otherwise", () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  const old = setJournalMode(true);
  try {
    const log = new Logger("ftp");
    log.info("login.ok", { user: "alice" });
    log.warn("disk.low", { free: "3%" });
    log.error("state.write_failed");
    setJournalMode(false);
    log.warn("disk.low");
    log.error("state.write_failed");
    log.info("x");
  } finally {
    setJournalMode(old);
    setLogSink(restore);
  }
  assert.deepEqual(lines, [
    "<6>ftp login.ok user=alice",
    "<4>ftp disk.low free=3%",
    "<3>ftp state.write_failed",
    "warn: ftp disk.low",
    "error: ftp state.write_failed",
    "ftp x",
  ]);
});

Deno.test("logger: JOURNAL_STREAM must name stdout's device and inode", () => {
  assert.equal(journalStreamMatches("8:12345", { dev: 8, ino: 12345 }), true);
  assert.equal(journalStreamMatches("8:12345", { dev: 8, ino: 99 }), false);
  assert.equal(journalStreamMatches(undefined, { dev: 8, ino: 12345 }), false);
  assert.equal(journalStreamMatches("garbage", null), false);
  assert.equal(journalStreamMatches("8:1", null), true);
});

async function childLines(env: Record<string, string>, sameStdout: boolean): Promise<string[]> {
  const script = `import { Logger } from ${
    JSON.stringify(new URL("../src/log/logger.ts", import.meta.url).href)
  };
const log = new Logger("alerts");
log.info("monitor.start");
log.warn("sensor.read_failed", { sensor: "cpu" });
log.error("state.write_failed");`;
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/child.ts`, script);
    // The shell sets JOURNAL_STREAM to its own stdout (the pipe we read), as systemd does for a unit.
    const js = sameStdout ? "$(stat -L -c %d:%i /proc/$$/fd/1)" : "1:1";
    const out = await new Deno.Command("sh", {
      args: [
        "-c",
        `JOURNAL_STREAM=${js} exec "$0" run --allow-env=JOURNAL_STREAM,OUTPOST_LOG "$1"`,
        Deno.execPath(),
        `${dir}/child.ts`,
      ],
      env,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.equal(out.code, 0);
    return new TextDecoder().decode(out.stdout).trim().split("\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("logger: a process whose stdout is the journal stream prefixes priorities", async () => {
  assert.deepEqual(await childLines({}, true), [
    "<6>alerts monitor.start",
    "<4>alerts sensor.read_failed sensor=cpu",
    "<3>alerts state.write_failed",
  ]);
  // JOURNAL_STREAM inherited but stdout redirected elsewhere: plain lines.
  assert.deepEqual(await childLines({}, false), [
    "alerts monitor.start",
    "warn: alerts sensor.read_failed sensor=cpu",
    "error: alerts state.write_failed",
  ]);
});

Deno.test("log: C0, DEL and C1 bytes from clients are escaped, never written raw (terminal escapes)", async () => {
  const { formatLogLine } = await import("../src/log/logger.ts");
  const line = formatLogLine("ftp", "dele", { path: "x\x1b]0;T\x07\u009b2J\x7f" });
  assert.equal(line, 'ftp dele path="x\\u001b]0;T\\u0007\\u009b2J\\u007f"');
});
