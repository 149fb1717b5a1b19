/**
 * Type-checks every JSDoc `@example` in the project (`deno task check-docs`, part of `deno task check`).
 *
 * It runs `deno check --doc` over {@link DOC_ROOTS} (or the paths given as arguments), prints every diagnostic
 * except one kind, and exits 1 if any remain.
 *
 * The kind it drops: Deno checks each example as a module of its own and adds one line that imports every
 * export of the documented file, `import { a, b, c } from "file:///…/x.ts";`. With the project's
 * `noUnusedLocals`, each name an example does not use is reported as "declared but never read" (TS6133,
 * TS6192, TS6198) on that line, thousands of times. Those are artifacts of the check, not mistakes in the
 * examples, and no compiler option can silence them without also silencing real unused locals. So an
 * unused-declaration diagnostic is dropped when it sits on that auto-import line: line 1 of an example module
 * (`file:///…/x.ts#12-20.ts:1:10`), or, when the example writes imports of its own, the line right after them
 * (Deno puts the example's own imports first), and, when Deno prints the line, it is the import of the
 * documented file by its `file://` URL. An unused local or import the example itself declares is still reported.
 *
 * If the command fails but its output cannot be understood (Deno changed its format, a module did not
 * resolve), the script prints the whole output and fails.
 *
 * @example
 * ```ts
 * const { code } = await new Deno.Command("deno", { args: ["run", "-A", "scripts/check_doc_examples.ts"] })
 *   .output();
 * console.log(code === 0 ? "every example type-checks" : "see the errors above");
 * ```
 *
 * @module
 */

/** What `deno check --doc` is run on: the library, the scripts, and the test helpers' documented exports. */
export const DOC_ROOTS: readonly string[] = ["mod.ts", "src/", "scripts/", "tests/helpers/"];

/**
 * Files whose examples do not type-check yet (empty since every example passes; a file goes here only while it
 * is being fixed): their diagnostics are counted, not printed, so `deno task check` guards every other file
 * meanwhile. Remove a file once its examples pass; the script fails while a listed file is clean.
 */
export const NOT_YET_CLEAN: readonly string[] = [];

/** TypeScript's "declared but never read" codes: one name, a whole import declaration, all type imports. */
const UNUSED_CODES = new Set(["TS6133", "TS6192", "TS6198"]);

/** One diagnostic as `deno check` prints it. */
export interface Diagnostic {
  /** The TypeScript code, e.g. `"TS2304"`. */
  code: string;
  /** Every line of the diagnostic as printed, header first. */
  lines: string[];
  /** Where it is: the module's URL, line and column, or `null` when no `at` line was printed. */
  at: { url: string; line: number; column: number } | null;
}

/**
 * Splits `deno check` output (colours already off) into diagnostics and the "Found N errors." count.
 *
 * @example
 * ```ts
 * const out = 'TS2304 [ERROR]: Cannot find name \'pid\'.\n    at file:///a.ts#3-6.ts:2:1\n\nFound 1 error.\n';
 * const { diagnostics, found } = parseCheckOutput(out);
 * console.log(diagnostics[0].code, diagnostics[0].at?.line, found); // TS2304 2 1
 * ```
 */
export function parseCheckOutput(output: string): { diagnostics: Diagnostic[]; found: number | null } {
  const diagnostics: Diagnostic[] = [];
  let found: number | null = null;
  let current: Diagnostic | null = null;
  for (const line of output.split("\n")) {
    const header = /^(TS\d+) \[ERROR\]: /.exec(line);
    const total = /^Found (\d+) errors?\.$/.exec(line);
    if (header) {
      current = { code: header[1], lines: [line], at: null };
      diagnostics.push(current);
    } else if (total || /^(Check |error: )/.test(line)) {
      if (total) found = Number(total[1]);
      current = null;
    } else if (current) {
      current.lines.push(line);
      const at = /^\s+at (\S+):(\d+):(\d+)$/.exec(line);
      if (at && current.at === null) {
        current.at = { url: at[1], line: Number(at[2]), column: Number(at[3]) };
      }
    }
  }
  for (const d of diagnostics) {
    while (d.lines.length > 1 && d.lines[d.lines.length - 1].trim() === "") d.lines.pop();
  }
  return { diagnostics, found };
}

/**
 * The line of an example module on which Deno puts its auto-import: 1, plus one for each import declaration
 * the example writes itself. `exampleUrl` is `file:///…/x.ts#12-20.ts`; `readText` reads the documented file.
 *
 * @example
 * ```ts
 * const source = 'line 1\nline 2\n * import { createServer } from "node:net";\n * createServer();\n';
 * console.log(autoImportLine("file:///x.ts#2-4.ts", () => source)); // 2
 * ```
 */
export function autoImportLine(exampleUrl: string, readText: (url: URL) => string): number {
  const m = /^(.*)#(\d+)-(\d+)\.[jt]sx?$/.exec(exampleUrl);
  if (!m) return 1;
  let lines: string[];
  try {
    lines = readText(new URL(m[1])).split("\n").slice(Number(m[2]) - 1, Number(m[3]));
  } catch {
    return 1;
  }
  const ownImports = lines.filter((l) =>
    /^\s*\*?\s*import\s+(?!\()/.test(l) && !/^\s*\*?\s*import\s+\w+\s*=/.test(l)
  );
  return 1 + ownImports.length;
}

/**
 * Whether a diagnostic is one of the auto-import artifacts described in the module doc.
 *
 * @example
 * ```ts
 * const out = "TS6133 [ERROR]: 'x' is declared but its value is never read.\n    at file:///a.ts#3-6.ts:1:10\n";
 * const [d] = parseCheckOutput(out).diagnostics;
 * console.log(isAutoImportArtifact(d, () => "")); // true
 * ```
 */
export function isAutoImportArtifact(d: Diagnostic, readText: (url: URL) => string): boolean {
  if (!UNUSED_CODES.has(d.code) || d.at === null) return false;
  const example = /#\d+-\d+\.[jt]sx?$/.test(d.at.url);
  if (!example) return false;
  if (d.at.line !== autoImportLine(d.at.url, readText)) return false;
  // Deno prints the source line unless it is very long; when it does, it must be the import of the file itself.
  const source = d.lines[1] ?? "";
  const documented = d.at.url.replace(/#\d+-\d+\.[jt]sx?$/, "");
  return /^\s+at /.test(source) || source.includes(`from "${documented}"`);
}

function toFileUrl(path: string): string {
  return new URL("file://" + path.split("/").map(encodeURIComponent).join("/")).href;
}

async function main(): Promise<number> {
  // Given paths, it checks just those and shows all their errors (NOT_YET_CLEAN applies to the full run).
  const roots = Deno.args.length > 0 ? Deno.args : DOC_ROOTS;
  const skipList = Deno.args.length > 0 ? [] : NOT_YET_CLEAN;
  const command = new Deno.Command(Deno.execPath(), {
    args: ["check", "--doc", ...roots],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  // NO_COLOR is set; colour codes are stripped as well in case a Deno ignores it.
  const ansi = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g");
  const output = (new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr)).replace(ansi, "");
  const { diagnostics, found } = parseCheckOutput(output);
  const cache = new Map<string, string>();
  const readText = (url: URL): string => {
    if (!cache.has(url.href)) cache.set(url.href, Deno.readTextFileSync(url));
    return cache.get(url.href)!;
  };
  const errors = diagnostics.filter((d) => !isAutoImportArtifact(d, readText));
  const fileOf = (d: Diagnostic): string =>
    d.at === null
      ? ""
      : decodeURIComponent(d.at.url.replace(/#.*$/, "").replace(toFileUrl(Deno.cwd()) + "/", ""));
  const real = errors.filter((d) => !skipList.includes(fileOf(d)));
  const skipped = new Set(errors.filter((d) => skipList.includes(fileOf(d))).map(fileOf));
  const nowClean = skipList.filter((f) => !skipped.has(f));
  const otherErrors = output.split("\n").filter((l) =>
    /^error: /.test(l) && l !== "error: Type checking failed."
  );
  const understood = code === 0 ||
    (diagnostics.length > 0 && (found === null || found === diagnostics.length) && otherErrors.length === 0);
  if (!understood) {
    console.error(output);
    console.error(
      `check_doc_examples: deno check --doc exited ${code} and its output could not be parsed ` +
        `(${diagnostics.length} diagnostics read, "Found ${found}" printed): treat this as a failure.`,
    );
    return 1;
  }
  for (const d of real) console.error(d.lines.join("\n") + "\n");
  const ignored = diagnostics.length - errors.length;
  if (skipped.size > 0) {
    console.error(
      `check_doc_examples: ${errors.length - real.length} errors not shown, in ${skipped.size} files ` +
        `listed in NOT_YET_CLEAN.`,
    );
  }
  if (nowClean.length > 0) {
    console.error(`check_doc_examples: now clean, remove from NOT_YET_CLEAN: ${nowClean.join(", ")}`);
    return 1;
  }
  if (real.length > 0) {
    console.error(
      `check_doc_examples: ${real.length} errors in JSDoc examples (${ignored} auto-import artifacts ignored).`,
    );
    return 1;
  }
  const scope = skipped.size > 0 ? "outside NOT_YET_CLEAN " : "";
  console.log(
    `check_doc_examples: every example ${scope}type-checks (${ignored} auto-import artifacts ignored).`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
