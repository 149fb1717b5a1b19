/**
 * What the FTP server needs from the system, from its parsed options: listen and passive ports, each user's root
 * (read-only users get read access only), the FTPS certificate files or the folder where a self-signed pair is
 * made, and the xferlog.
 *
 * @module
 */

import { isWildcardHost, type SandboxNeeds, SandboxNeedsBuilder } from "../config/sandbox_needs.ts";
import type { FtpPermissions } from "./ftp_file_system.ts";
import type { FtpServerOptions } from "./ftp_server.ts";
import { DEFAULT_MIN_FREE_BYTES } from "./ftp_options.ts";

/** Most passive ports listed one by one in `--allow-net` (Deno has no port ranges); wider ranges allow the host. */
export const MAX_LISTED_PORTS = 256;

/**
 * True when `perms` allow any change below the root (upload, append, delete, mkdir, rename, chmod).
 *
 * @example
 * ```ts
 * import { READ_ONLY } from "./ftp_file_system.ts";
 *
 * canChange(READ_ONLY); // false
 * ```
 */
export function canChange(perms: FtpPermissions): boolean {
  return perms.write || perms.append || perms.delete || perms.mkdir || perms.rename || perms.chmod;
}

/**
 * The FTP server's needs for `opts` (an `[ftp]` table read by `readFtpSection`).
 *
 * @example
 * ```ts
 * import type { FtpServerOptions } from "./ftp_server.ts";
 *
 * declare const opts: FtpServerOptions; // the [ftp] table, as readFtpSection returns it
 * const needs = ftpSandboxNeeds(opts);
 * needs.net; // [":21", ":50000", ...]
 * ```
 */
export function ftpSandboxNeeds(opts: FtpServerOptions): SandboxNeeds {
  const b = new SandboxNeedsBuilder();
  const host = opts.hostname;
  // The listeners' self-check connects to each listening port over loopback (ftp_server.ts, probeHost): ":port"
  // covers 127.0.0.1, but a "::" listener is probed on [::1].
  const listen = (h: string, port: number) => {
    b.listen(h, port);
    if (h === "::" || h === "[::]") b.connect("::1", port);
  };
  listen(host, opts.port);
  const tls = opts.tls;
  if (tls && tls.mode !== "off") {
    if (tls.implicitPort) listen(tls.implicitHost ?? host, tls.implicitPort);
    if (tls.certPath && tls.keyPath) {
      b.read(tls.certPath).read(tls.keyPath);
    } else {
      // The self-signed pair is made at first start, named after this machine.
      b.readWrite(tls.certDir, { own: true }).sys("hostname");
    }
  }
  const { portMin, portMax } = opts.passive;
  if (portMin > 0 && portMax >= portMin && portMax - portMin < MAX_LISTED_PORTS) {
    for (let p = portMin; p <= portMax; p++) b.listen(host, p);
  } else if (isWildcardHost(host)) {
    b.anyNet(
      `ftp listens on ${host} with ${
        portMin > 0 ? `a passive range wider than ${MAX_LISTED_PORTS} ports` : "no passive port range"
      }: passive ports can be any port on any local address, so --allow-net is not narrowed ` +
        `(set [ftp.passive] ports = "50000-50031" to narrow it)`,
    );
  } else {
    b.anyPortOn(host);
    if (portMin > 0) {
      b.note(`passive range is wider than ${MAX_LISTED_PORTS} ports: any port on ${host} allowed`);
    }
  }
  if (opts.allowActive) {
    b.anyNet(
      "ftp active mode (PORT/EPRT) is on: it connects back to any client, so --allow-net is not narrowed " +
        "(set [ftp] active = false to narrow it)",
    );
  }
  for (const u of opts.accounts.users) {
    if (canChange(u.perms)) {
      b.readWrite(u.root, { own: true });
      // The upload reserve (min_free) asks statfs(2) how much room is left.
      if ((opts.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES) > 0) b.sys("statfs");
    } else b.read(u.root).ownDir(u.root);
  }
  const anon = opts.accounts.anonymousRoot;
  if (anon) b.read(anon).ownDir(anon);
  // The xferlog is appended to; it may live in a root-owned folder such as /var/log, so prepare makes the file.
  if (opts.xferlogPath) b.readWrite(opts.xferlogPath, { own: true, file: true });
  return b.build();
}
