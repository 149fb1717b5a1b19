/**
 * Hostile sensor paths: a named pipe (must be refused, not block the reader forever), a directory, and a huge
 * file (read only up to the small buffer). Each ends in a SensorReadError naming the path, or a bounded read.
 */
import assert from "node:assert/strict";
import { fingerprintFile, readSmallFile, SensorReadError } from "../src/alerts/sensor_readers.ts";

/** Settles `p` or gives up after `ms` with a rejection, so a blocking read fails the test instead of hanging it. */
async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`${what} did not finish within ${ms} ms.`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("hostile sensors: a FIFO, a directory and a huge file never hang or read unbounded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost_hostile_sensor_" });
  try {
    const fifo = `${dir}/temp`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(mk.success, "mkfifo failed");
    for (
      const read of [
        () => readSmallFile(fifo),
        () => fingerprintFile(fifo, null, new Uint8Array(1024)).then(String),
      ]
    ) {
      await assert.rejects(
        bounded(read(), 5000, "Reading a FIFO"),
        (e: unknown) =>
          e instanceof SensorReadError && e.message.includes(fifo) && /not a regular file/.test(e.message),
      );
    }

    await assert.rejects(
      bounded(readSmallFile(dir), 5000, "Reading a directory"),
      (e: unknown) => e instanceof SensorReadError && e.message.includes(dir),
    );

    // A 100 MB sparse file: only the small buffer is read.
    const huge = `${dir}/huge`;
    const f = await Deno.open(huge, { write: true, create: true });
    await f.truncate(100 << 20);
    f.close();
    const text = await bounded(readSmallFile(huge, new Uint8Array(64)), 5000, "Reading a huge file");
    assert.equal(text.length, 64);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
