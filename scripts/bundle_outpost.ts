/**
 * Bundles the outpost CLI (and the boot-time prepare step) into single self-contained JavaScript files with
 * `deno bundle`, npm dependencies inlined, so the board runs them offline with `deno run --no-npm --no-remote`.
 *
 * @module
 */

import { ImageError, mustRun } from "./disk_image.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Entry points bundled for the board: output file name to source module. */
export const BUNDLES: Record<string, string> = {
  "outpost.js": `${REPO}/src/cli/main.ts`,
  "outpost-prepare.js": `${REPO}/scripts/outpost_prepare.ts`,
  "outpost-make-unit.js": `${REPO}/scripts/make_unit.ts`,
};

/**
 * Bundles `entry` to `out` and checks that nothing is left to resolve at run time (no `npm:`/`jsr:`/`http`
 * imports).
 *
 * @example
 * ```ts
 * await bundleOutpost("build/outpost.js");
 * ```
 */
export async function bundleOutpost(out: string, entry: string = BUNDLES["outpost.js"]): Promise<void> {
  await mustRun(
    Deno.execPath(),
    [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "--packages",
      "bundle",
      "--config",
      `${REPO}/deno.json`,
      "-o",
      out,
      entry,
    ],
    `bundling ${entry}`,
  );
  const text = await Deno.readTextFile(out);
  const leftover = /\bimport\s*(?:\(|[^;]*?from\s*)\s*["'](npm:|jsr:|https?:)[^"']*["']/.exec(text);
  if (leftover) {
    throw new ImageError(
      `The bundle ${out} still imports ${leftover[0]}; it would need the network on the board.`,
    );
  }
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? `${REPO}/build`;
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, entry] of Object.entries(BUNDLES)) {
    await bundleOutpost(`${dir}/${name}`, entry);
    console.log(`${dir}/${name}`);
  }
}
