/** scripts/check_doc_examples.ts drops only the unused names of Deno's auto-import line, nothing else. */

import assert from "node:assert/strict";
import { isAutoImportArtifact, parseCheckOutput } from "../scripts/check_doc_examples.ts";

// What the documented file holds at lines 3-8: an example that writes an import of its own.
const SOURCE = [
  "/**",
  " * @example",
  " * ```ts",
  ' * import { createServer } from "node:net";',
  " * foo();",
  " * ```",
  " */",
  "export function foo(): void {}",
].join("\n");

const OUTPUT = `Check file:///w/a.ts#3-8.ts
TS6133 [ERROR]: 'bar' is declared but its value is never read.
import { bar } from "file:///w/a.ts";
         ~~~
    at file:///w/a.ts#3-8.ts:2:10

TS6133 [ERROR]: 'createServer' is declared but its value is never read.
import { createServer } from "node:net";
         ~~~~~~~~~~~~
    at file:///w/a.ts#3-8.ts:1:10

TS6192 [ERROR]: All imports in import declaration are unused.
    at file:///w/b.ts#10-14.ts:1:1

TS6133 [ERROR]: 'r' is declared but its value is never read.
const r = 1;
      ^
    at file:///w/b.ts#10-14.ts:2:7

TS2304 [ERROR]: Cannot find name 'pid'.
readStat(pid);
         ~~~
    at file:///w/b.ts#10-14.ts:3:10

TS6133 [ERROR]: 'x' is declared but its value is never read.
const x = 1;
      ^
    at file:///w/b.ts:1:7

Found 6 errors.

error: Type checking failed.
`;

Deno.test("check-docs: parses each diagnostic with its place and the total", () => {
  const { diagnostics, found } = parseCheckOutput(OUTPUT);
  assert.equal(found, 6);
  assert.deepEqual(
    diagnostics.map((d) => [d.code, d.at?.url, d.at?.line]),
    [
      ["TS6133", "file:///w/a.ts#3-8.ts", 2],
      ["TS6133", "file:///w/a.ts#3-8.ts", 1],
      ["TS6192", "file:///w/b.ts#10-14.ts", 1],
      ["TS6133", "file:///w/b.ts#10-14.ts", 2],
      ["TS2304", "file:///w/b.ts#10-14.ts", 3],
      ["TS6133", "file:///w/b.ts", 1],
    ],
  );
});

Deno.test("check-docs: drops the auto-import line's unused names, keeps the example's own mistakes", () => {
  const read = (url: URL) => (url.pathname === "/w/a.ts" ? SOURCE : "no imports here");
  const kept = parseCheckOutput(OUTPUT).diagnostics.filter((d) => !isAutoImportArtifact(d, read));
  assert.deepEqual(kept.map((d) => d.lines[0]), [
    // The example's own import on line 1 (the auto-import is on line 2 there).
    "TS6133 [ERROR]: 'createServer' is declared but its value is never read.",
    // An unused local of the example, a name it never declares, an unused local of a plain module.
    "TS6133 [ERROR]: 'r' is declared but its value is never read.",
    "TS2304 [ERROR]: Cannot find name 'pid'.",
    "TS6133 [ERROR]: 'x' is declared but its value is never read.",
  ]);
});
