/**
 * An in-process FTPS server for tests (explicit AUTH TLS and an implicit port), with helpers to run peers.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createSelfSignedCertificate, writeCertificateFiles } from "../../src/net/certificate.ts";
import type { FtpServerOptions } from "../../src/ftp/ftp_server.ts";
import { defaultFtpTlsOptions, type FtpTlsOptions } from "../../src/ftp/ftps.ts";
import { type FtpFixture, startFtp } from "./ftp_fixture.ts";

/** A running FTPS test server. */
export interface FtpsFixture extends FtpFixture {
  /** The implicit FTPS port. */
  implicitPort: number;
  /** The certificate PEM and its fingerprint. */
  certPem: string;
  fingerprint: string;
}

const pairP = createSelfSignedCertificate({ hostname: "outpost-test" });

/**
 * Starts a server with TLS (default mode "optional", session reuse required, implicit port on) in a temp dir.
 *
 * @example
 * ```ts
 * const fx = await startFtps({ mode: "required" });
 * await fx.close();
 * ```
 */
export async function startFtps(
  tls: Partial<FtpTlsOptions> = {},
  overrides: Partial<FtpServerOptions> = {},
): Promise<FtpsFixture> {
  const pair = await pairP;
  const certDir = await Deno.makeTempDir({ prefix: "outpost-ftps-cert-" });
  const { certPath, keyPath } = await writeCertificateFiles(certDir, pair);
  const fx = await startFtp({
    anonymous: true,
    server: {
      ...overrides,
      tls: {
        ...defaultFtpTlsOptions(),
        mode: "optional",
        certPath,
        keyPath,
        certDir,
        implicitPort: 0,
        ...tls,
      },
    },
  });
  return {
    ...fx,
    implicitPort: fx.server.implicitPort ?? 0,
    certPem: pair.certPem,
    fingerprint: pair.fingerprint,
    close: async () => {
      await fx.close();
      await Deno.remove(certDir, { recursive: true });
    },
  };
}

/** Runs a command; resolves to its exit code and output. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

/** SHA-256 of a file, streamed with one buffer. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  const f = await Deno.open(path);
  try {
    const buf = new Uint8Array(64 * 1024);
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

/** Writes `size` pseudo-random bytes to `path`. */
export async function writeRandom(path: string, size: number): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const buf = new Uint8Array(64 * 1024);
    for (let left = size; left > 0;) {
      const n = Math.min(left, buf.length);
      crypto.getRandomValues(buf.subarray(0, Math.min(n, 65536)));
      let off = 0;
      while (off < n) off += await f.write(buf.subarray(off, n));
      left -= n;
    }
  } finally {
    f.close();
  }
}
