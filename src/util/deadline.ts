/**
 * One timeout helper for child processes and sockets.
 *
 * Every bounded wait in outpost has the same shape: start a timer that, when it fires, ends the thing being
 * waited on (SIGKILL a child, close a socket) so the pending read or `status` settles; afterwards tell a timeout
 * from any other failure, so the message can say "did not finish within N ms"; and always clear the timer, or a
 * fast answer leaves it holding the event loop. {@link deadline} is that shape once, with `using` to clear it:
 *
 * ```ts
 * import { killAfter } from "./deadline.ts";
 *
 * const child = new Deno.Command("sleep", { args: ["10"] }).spawn();
 * using limit = killAfter(child, 2000);
 * await child.status;
 * if (limit.expired) console.log("killed after 2 s");
 * ```
 *
 * It has no imports, so any folder of `src/` may use it.
 *
 * @module
 */

/** A running time limit; see {@link deadline}. */
export interface Deadline extends Disposable {
  /** True once the time ran out (and the expiry action ran). */
  readonly expired: boolean;
  /** Cancels the limit if it has not run yet; safe to call twice. `using` calls it at the end of the scope. */
  clear(): void;
}

/**
 * Runs `onExpire` once after `ms` unless {@link Deadline.clear} comes first. An exception from `onExpire` is
 * swallowed: ending something that already ended is not an error.
 *
 * @example
 * ```ts
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 2121 });
 * using limit = deadline(10_000, () => conn.close());
 * const n = await conn.read(new Uint8Array(512)).catch(() => null);
 * console.log(limit.expired ? "no answer within 10 s" : `${n} bytes`);
 * ```
 */
export function deadline(ms: number, onExpire: () => void): Deadline {
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(() => {
    timer = undefined;
    expired = true;
    try {
      onExpire();
    } catch {
      // Already gone.
    }
  }, ms);
  const clear = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return {
    get expired() {
      return expired;
    },
    clear,
    [Symbol.dispose]: clear,
  };
}

/**
 * Kills `child` with SIGKILL after `ms` (a child that ignores SIGTERM still ends, and its pipes close).
 *
 * @example
 * ```ts
 * const child = new Deno.Command("vcgencmd", { args: ["get_throttled"], stdout: "piped" }).spawn();
 * using limit = killAfter(child, 2000);
 * const out = await child.output();
 * console.log(limit.expired ? "vcgencmd hung" : new TextDecoder().decode(out.stdout));
 * ```
 */
export function killAfter(child: Pick<Deno.ChildProcess, "kill">, ms: number): Deadline {
  return deadline(ms, () => child.kill("SIGKILL"));
}

/**
 * Closes `conn` after `ms`, which makes a pending `read` or `write` on it reject or end.
 *
 * @example
 * ```ts
 * const conn = await Deno.connect({ transport: "unix", path: "/var/lib/outpost/status.sock" });
 * using limit = closeAfter(conn, 10_000);
 * const n = await conn.read(new Uint8Array(65536)).catch(() => null);
 * if (limit.expired) console.log("the daemon did not answer");
 * else console.log(n);
 * ```
 */
export function closeAfter(conn: { close(): void }, ms: number): Deadline {
  return deadline(ms, () => conn.close());
}
