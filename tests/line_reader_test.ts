import assert from "node:assert/strict";
import { LineReader, LineTooLongError } from "../src/net/line_reader.ts";

/** A source that returns the given chunks one read at a time. */
function chunks(...parts: string[]): { read(buf: Uint8Array): Promise<number | null> } {
  const enc = new TextEncoder();
  const queue = parts.map((p) => enc.encode(p));
  return {
    read(buf: Uint8Array): Promise<number | null> {
      const next = queue.shift();
      if (!next) return Promise.resolve(null);
      const n = Math.min(next.length, buf.length);
      buf.set(next.subarray(0, n));
      if (n < next.length) queue.unshift(next.subarray(n));
      return Promise.resolve(n);
    },
  };
}

async function all(reader: LineReader): Promise<string[]> {
  const out: string[] = [];
  for (let l = await reader.readLine(); l !== null; l = await reader.readLine()) out.push(l);
  return out;
}

Deno.test("line reader joins split lines and splits joined ones", async () => {
  const r = new LineReader(chunks("US", "ER a\r", "\nPASS b\r\nNOOP\nQU", "IT\r\n"));
  assert.deepEqual(await all(r), ["USER a", "PASS b", "NOOP", "QUIT"]);
});

Deno.test("line reader rejects an overlong line, then resynchronises", async () => {
  const r = new LineReader(chunks("x".repeat(50), "y".repeat(50), "\r\nNOOP\r\n"), { maxLineLength: 16 });
  await assert.rejects(() => r.readLine(), LineTooLongError);
  assert.equal(await r.readLine(), "NOOP");
  assert.equal(await r.readLine(), null);
});

Deno.test("line reader keeps a 1 MiB line without CRLF within its buffer", async () => {
  const big = "A".repeat(1 << 20);
  const r = new LineReader(chunks(big), { maxLineLength: 512 });
  await assert.rejects(() => r.readLine(), LineTooLongError);
  assert.equal(await r.readLine(), null);
});

Deno.test("line reader accepts a bare-CR line when asked and skips a late LF", async () => {
  const r = new LineReader(chunks("ABOR\r", "\nNOOP\r\n"), {
    acceptBareCr: (p) => new TextDecoder().decode(p).toUpperCase().endsWith("ABOR\r"),
  });
  assert.equal(await r.readLine(), "ABOR");
  assert.equal(await r.readLine(), "NOOP");
});

Deno.test("line reader discards buffered plaintext on setSource", async () => {
  const r = new LineReader(chunks("AUTH TLS\r\nUSER evil\r\n"));
  assert.equal(await r.readLine(), "AUTH TLS");
  assert.equal(r.setSource(chunks("USER good\r\n")), "USER evil\r\n".length);
  assert.equal(await r.readLine(), "USER good");
});
