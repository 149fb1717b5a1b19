import assert from "node:assert/strict";
import { CrlfToLf, LfToCrlf } from "../src/ftp/ascii.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function toCrlf(chunks: string[]): string {
  const conv = new LfToCrlf();
  let out = "";
  const dst = new Uint8Array(64);
  for (const c of chunks) {
    const src = enc.encode(c);
    out += dec.decode(dst.subarray(0, conv.convert(src, src.length, dst)));
  }
  return out;
}

function toLf(chunks: string[], extra = 0): string {
  const conv = new CrlfToLf();
  let out = "";
  for (const c of chunks) {
    const src = enc.encode(c);
    const buf = new Uint8Array(src.length + extra);
    buf.set(src);
    out += dec.decode(buf.subarray(0, conv.convert(buf, src.length)));
  }
  const tail = new Uint8Array(1);
  out += dec.decode(tail.subarray(0, conv.flush(tail)));
  return out;
}

Deno.test("LfToCrlf converts bare LF and leaves CRLF alone, across chunks", () => {
  assert.equal(toCrlf(["a\nb\r\nc"]), "a\r\nb\r\nc");
  assert.equal(toCrlf(["a\r", "\nb\n"]), "a\r\nb\r\n");
  assert.equal(toCrlf(["\n\n"]), "\r\n\r\n");
  assert.equal(toCrlf(["x", "", "\n"]), "x\r\n");
});

Deno.test("CrlfToLf converts CRLF in place, across chunks, keeping bare CR", () => {
  assert.equal(toLf(["a\r\nb\r\n"]), "a\nb\n");
  assert.equal(toLf(["a\r", "\nb"]), "a\nb");
  assert.equal(toLf(["a\r", "b"]), "a\rb");
  assert.equal(toLf(["a\r"]), "a\r");
  assert.equal(toLf(["\r\r\n"]), "\r\n");
  assert.equal(toLf(["\r", "\r", "\n"]), "\r\n");
  assert.equal(toLf(["", "a\r\n", ""]), "a\n");
});

Deno.test("CrlfToLf never writes past a full buffer when a CR was held back", () => {
  // Each chunk fills its buffer exactly; the held CR must not overflow it.
  assert.equal(toLf(["ab\r", "cd", "ef\r", "\n"]), "ab\rcdef\n");
  const conv = new CrlfToLf();
  const buf = new Uint8Array(2);
  const out: number[] = [];
  const input = enc.encode("x\ryz\r\r\n\rq");
  for (let i = 0; i < input.length; i += 2) {
    const n = Math.min(2, input.length - i);
    buf.set(input.subarray(i, i + n));
    const m = conv.convert(buf, n);
    assert.ok(m <= buf.length);
    out.push(...buf.subarray(0, m));
  }
  const tail = new Uint8Array(1);
  out.push(...tail.subarray(0, conv.flush(tail)));
  assert.equal(dec.decode(new Uint8Array(out)), "x\ryz\r\n\rq");
});

Deno.test("round trip of random data with random chunking", () => {
  const data = new Uint8Array(20_000);
  for (let i = 0; i < data.length; i++) {
    const r = Math.random();
    data[i] = r < 0.1 ? 10 : r < 0.15 ? 13 : 97;
  }
  // Only LF-only text round-trips exactly; strip CRs that precede LF for the reference.
  const ref: number[] = [];
  for (let i = 0; i < data.length; i++) if (!(data[i] === 13 && data[i + 1] === 10)) ref.push(data[i]);
  const lf = new LfToCrlf();
  const cr = new CrlfToLf();
  const wire = new Uint8Array(2 * 4096);
  const back: number[] = [];
  for (let i = 0; i < data.length;) {
    const n = Math.min(1 + Math.floor(Math.random() * 4096), data.length - i);
    const w = lf.convert(data.subarray(i, i + n), n, wire);
    const m = cr.convert(wire, w);
    back.push(...wire.subarray(0, m));
    i += n;
  }
  const tail = new Uint8Array(1);
  back.push(...tail.subarray(0, cr.flush(tail)));
  assert.deepEqual(new Uint8Array(back), new Uint8Array(ref));
});
