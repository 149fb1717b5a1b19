/**
 * Running outpost's source as another local user (the daemon as `outpost`, sendmail as `nobody`), which needs a
 * Deno binary and a module cache those users can read: the test runner's Deno may live in root's home (npx), and
 * its cache in root's `~/.cache`. {@link fieldDeno} copies the binary once to `/var/tmp` and fills a shared cache.
 *
 * @module
 */

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const MAIN = `${ROOT}/src/cli/main.ts`;

/** A Deno binary and `DENO_DIR` usable by every local user. */
export interface FieldDeno {
  /** Path of a world-executable copy of the running Deno. */
  deno: string;
  /** A world-writable module cache with outpost's dependencies. */
  denoDir: string;
  /** `src/cli/main.ts` of this checkout. */
  main: string;
}

let cached: Promise<FieldDeno> | null = null;

async function prepare(): Promise<FieldDeno> {
  const dir = `/var/tmp/outpost-field-deno-${Deno.version.deno}`;
  const deno = `${dir}/deno`;
  const denoDir = `${dir}/cache`;
  await Deno.mkdir(denoDir, { recursive: true });
  await Deno.chmod(dir, 0o755);
  const want = (await Deno.stat(Deno.execPath())).size;
  const have = await Deno.stat(deno).then((s) => s.size).catch(() => -1);
  if (have !== want) {
    const tmp = `${deno}.${Deno.pid}`;
    await Deno.copyFile(Deno.execPath(), tmp);
    await Deno.chmod(tmp, 0o755);
    await Deno.rename(tmp, deno);
  }
  const out = await new Deno.Command(deno, {
    args: ["cache", MAIN],
    env: { DENO_DIR: denoDir, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`deno cache failed: ${new TextDecoder().decode(out.stderr)}`);
  await new Deno.Command("chmod", { args: ["-R", "a+rwX", denoDir] }).output();
  return { deno, denoDir, main: MAIN };
}

/**
 * Prepares (once per test process) the Deno binary and cache other users can run outpost with.
 *
 * @example
 * ```ts
 * const { deno, denoDir, main } = await fieldDeno();
 * const argv = [...asUser(user), deno, "run", "-A", main, "sendmail", "root"];
 * ```
 */
export function fieldDeno(): Promise<FieldDeno> {
  cached ??= prepare();
  return cached;
}
