/**
 * A seeded generator of mangled outpost.toml files (the board templates and the README's TOML examples with
 * random keys and values deleted, duplicated, renamed and retyped, table headers changed and garbage lines
 * inserted): `parseConfig` must either return or throw a ConfigError whose every problem names a key or a line,
 * never another exception type.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { ConfigError } from "../src/config/section.ts";

const SEED = Number(Deno.env.get("OUTPOST_FUZZ_SEED") ?? 0xc0f1);
const ROUNDS = 1500;

function makeRng(seed: number): { int(n: number): number; pick<T>(a: readonly T[]): T } {
  let x = (seed >>> 0) || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return { int: (n) => next() % n, pick: (a) => a[next() % a.length] };
}

const VALUES = [
  '""',
  '"x"',
  '"-1"',
  '"1e400"',
  '"10 parsecs"',
  '"0s"',
  '"-5m"',
  '"99999999999999999999 MB"',
  '"/"',
  '"../../etc"',
  '"\\u0000"',
  '"h\u00e9llo \u2713"',
  "0",
  "-1",
  "9223372036854775807",
  "-9223372036854775808",
  "1e308",
  "-inf",
  "nan",
  "3.5",
  "true",
  "false",
  "[]",
  "[1, 2]",
  '["a", 1]',
  "[[]]",
  "{}",
  "{ a = 1 }",
  '{ name = "x", password_hash = 1 }',
  "1979-05-27T07:32:00Z",
  "1979-05-27",
  "07:32:00",
  "1979-05-27T07:32:00",
  "0x7fffffff",
  "0o777",
  "0b1",
];
const GARBAGE = [
  "=",
  "[",
  "[[",
  "[]",
  "key",
  "= 1",
  "a.b.c = 1",
  "[ftp.users.x]",
  "[[ftp]]",
  "[[smtp]]",
  "[alerts.rules.x.y.z]",
  '"quoted key" = 1',
  "\u0000",
  'x = "unterminated',
  "x = '''",
  "# comment",
  "[device]",
  "[smtp]",
  "[[alerts.rules]]",
  "ftp = 1",
  "alerts = []",
];

async function sources(): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir("boards")) {
    if (e.isFile && e.name.endsWith(".toml")) out.push(await Deno.readTextFile(`boards/${e.name}`));
  }
  const readme = await Deno.readTextFile("README.md");
  for (const m of readme.matchAll(/```toml\n([\s\S]*?)```/g)) out.push(m[1].replace(/^ {3}/gm, ""));
  out.sort();
  return out;
}

function mangle(text: string, r: ReturnType<typeof makeRng>): string {
  const lines = text.split("\n");
  const edits = 1 + r.int(6);
  for (let i = 0; i < edits && lines.length > 0; i++) {
    const at = r.int(lines.length);
    const l = lines[at];
    const kv = /^(\s*)([A-Za-z0-9_."-]+)(\s*=\s*)(.*)$/.exec(l);
    switch (r.int(8)) {
      case 0:
        lines.splice(at, 1);
        break;
      case 1:
        lines.splice(at, 0, l);
        break;
      case 2:
      case 3:
        if (kv) lines[at] = `${kv[1]}${kv[2]}${kv[3]}${r.pick(VALUES)}`;
        break;
      case 4:
        if (kv) lines[at] = `${kv[1]}${kv[2]}_x${kv[3]}${kv[4]}`;
        break;
      case 5:
        lines.splice(at, 0, r.pick(GARBAGE));
        break;
      case 6:
        if (/^\s*\[/.test(l)) {
          lines[at] = r.int(2) ? l.replace("[", "[[").replace("]", "]]") : r.pick(GARBAGE);
        }
        break;
      default: {
        // Move a key-value line into another table.
        if (kv) {
          lines.splice(at, 1);
          lines.splice(r.int(lines.length + 1), 0, l);
        }
      }
    }
  }
  return lines.join("\n");
}

Deno.test("config fuzz: mangled configs either parse or throw a ConfigError naming keys or lines", async () => {
  const docs = await sources();
  assert.ok(docs.length >= 5, `only ${docs.length} source documents`);
  const r = makeRng(SEED);
  let ok = 0;
  let refused = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const text = mangle(r.pick(docs), r);
    try {
      parseConfig(text, "/etc/outpost/outpost.toml");
      ok++;
    } catch (e) {
      if (!(e instanceof ConfigError)) {
        throw new Error(`seed ${SEED} round ${i}: ${e} (${(e as Error).constructor.name}) for:\n${text}`);
      }
      refused++;
      for (const p of e.problems) {
        assert.match(
          p,
          /^(line \d+, column \d+: |[^:\n]+: \S)/,
          `seed ${SEED} round ${i}: a problem names no key or line: ${p}`,
        );
      }
    }
  }
  assert.ok(ok > 0 && refused > 0, `ok ${ok}, refused ${refused}`);
});
