/**
 * Small helpers shared by many tests: a free loopback port, running a child process with a safety bound, and
 * streaming a file's SHA-256.
 *
 * @module
 */

import { createHash } from "node:crypto";

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (for servers started in a child process, which cannot
 * report a port 0 choice back).
 *
 * @example
 * ```ts
 * const port = freePort();
 * console.log(port);
 * ```
 */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Result of a child process. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Standard output, decoded as UTF-8. */
  stdout: string;
  /** Standard error, decoded as UTF-8. */
  stderr: string;
  /** True when the safety bound was exceeded and the child was killed. */
  timedOut: boolean;
}

/**
 * Runs a command with a safety bound (kills only this child when it is exceeded; no timing is asserted).
 *
 * @example
 * ```ts
 * const r = await run("curl", ["-s", "ftp://127.0.0.1:2121/"]);
 * console.log(r);
 * ```
 */
export async function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }, opts.timeoutMs ?? 120_000);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr), timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * SHA-256 of a file as lowercase hex, streamed with one buffer.
 *
 * @example
 * ```ts
 * const h = await sha256File("/tmp/x");
 * console.log(h);
 * ```
 */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(256 * 1024);
    for (;;) {
      const n = await f.read(buf);
      if (n === null) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    f.close();
  }
  return h.digest("hex");
}
