/**
 * Drives `ftp_server_child.ts`: an FTP server in its own process, with its own `ulimit -n` or heap cap.
 *
 * @module
 */

import { LineReader } from "../../src/net/line_reader.ts";

const streamReaders = new WeakMap<
  ReadableStream<Uint8Array>,
  { r: ReadableStreamDefaultReader<Uint8Array>; rest: Uint8Array }
>();

/**
 * `read(buf)` over a byte stream (for LineReader).
 *
 * @example
 * ```ts
 * const lines = new LineReader({ read: (b) => readStream(child.stdout, b) });
 * ```
 */
export async function readStream(
  stream: ReadableStream<Uint8Array>,
  buf: Uint8Array,
): Promise<number | null> {
  let st = streamReaders.get(stream);
  if (!st) streamReaders.set(stream, st = { r: stream.getReader(), rest: new Uint8Array(0) });
  if (st.rest.length === 0) {
    const { value, done } = await st.r.read();
    if (done) return null;
    st.rest = value;
  }
  const n = Math.min(buf.length, st.rest.length);
  buf.set(st.rest.subarray(0, n));
  st.rest = st.rest.subarray(n);
  return n;
}

/** What the child prints when it listens. */
export interface ChildInfo {
  port: number;
  implicitPort: number | null;
  certPem: string;
  root: string;
}

/** A running child server. */
export interface FtpChild {
  info: ChildInfo;
  /** The child's process id (bash execs deno, so it is deno's). */
  pid: number;
  /** Sends one command line and returns the JSON line it answers. */
  ask<T>(command: string): Promise<T>;
  /** Ends the child (stdin closed, SIGKILL after 15 s) and waits for it. */
  close(): Promise<void>;
}

/**
 * Starts `ftp_server_child.ts` with server options `opts`, under `ulimit -n` and extra Deno flags if given.
 *
 * @example
 * ```ts
 * const child = await startFtpChild({ selfCheckMs: 0 }, { nofile: 128 });
 * await child.close();
 * ```
 */
export async function startFtpChild(
  opts: Record<string, unknown>,
  run: { nofile?: number; denoFlags?: string[] } = {},
): Promise<FtpChild> {
  const script = new URL("./ftp_server_child.ts", import.meta.url).pathname;
  const limit = run.nofile ? `ulimit -n ${run.nofile} && ` : "";
  const flags = (run.denoFlags ?? []).map((f) => `'${f}'`).join(" ");
  const child = new Deno.Command("bash", {
    args: ["-c", `${limit}exec "${Deno.execPath()}" run -A ${flags} "${script}" '${JSON.stringify(opts)}'`],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    env: { OUTPOST_LOG: "off" },
  }).spawn();
  const reader = new LineReader({ read: (b: Uint8Array) => readStream(child.stdout, b) }, {
    maxLineLength: 1 << 20,
  });
  const next = async <T>(): Promise<T> => {
    for (let i = 0; i < 100_000; i++) {
      const line = await reader.readLine();
      if (line === null) throw new Error("The child server ended.");
      if (line.startsWith("{")) return JSON.parse(line) as T;
    }
    throw new Error("No JSON line from the child server.");
  };
  const writer = child.stdin.getWriter();
  const close = async () => {
    await writer.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      child.status.then(() => true),
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), 15_000)),
    ]);
    clearTimeout(timer);
    if (!ended) child.kill("SIGKILL");
    await child.status;
    await reader.readLine().catch(() => null);
    await child.stdout.cancel().catch(() => {});
  };
  let info: ChildInfo;
  try {
    info = await next<ChildInfo>();
  } catch (e) {
    await close();
    throw e;
  }
  return {
    info,
    pid: child.pid,
    ask: async <T>(command: string) => {
      await writer.write(new TextEncoder().encode(command + "\n"));
      return await next<T>();
    },
    close,
  };
}
