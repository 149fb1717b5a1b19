/**
 * The old shape of the FTP test fixture, kept only for `ftps_fixture.ts` until it imports `ftp_fixture.ts`
 * directly (then delete this file). New tests use {@link startFtp} from `ftp_fixture.ts`.
 *
 * @module
 */

import type { FtpServerOptions } from "../../src/ftp/ftp_server.ts";
import { type FtpFixture as Fixture, startFtp as start } from "./ftp_fixture.ts";

/** The fixture with its old field names: `dir` (= `base`), `host` (= `hostname`), `anonRoot` (= `pub`). */
export interface FtpFixture extends Fixture {
  /** Same as `base`. */
  dir: string;
  /** Same as `hostname`. */
  host: string;
  /** Same as `pub`. */
  anonRoot: string;
}

/**
 * `ftp_fixture.ts`'s startFtp with anonymous access on and the old signature.
 *
 * @example
 * ```ts
 * const fx = await startFtp({ maxSessions: 2 }, "::1");
 * await fx.close();
 * ```
 */
export async function startFtp(
  overrides: Partial<FtpServerOptions> = {},
  host = "127.0.0.1",
): Promise<FtpFixture> {
  const fx = await start({ anonymous: true, hostname: host, server: overrides });
  return { ...fx, dir: fx.base, host: fx.hostname, anonRoot: fx.pub };
}
