/**
 * `outpost cert`: creates the self-signed FTPS certificate and prints its SHA-256 fingerprint.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { findConfigPath, loadConfig } from "../app/outpost_config.ts";
import { fingerprintLines } from "../net/cert_fingerprints.ts";
import { createSelfSignedCertificate, writeCertificateFiles } from "../net/certificate.ts";

const HELP = `Usage: outpost cert [--config FILE] [--out DIR] [--hostname H] [--force]

Creates a self-signed TLS certificate (cert.pem) and private key (key.pem, mode 0600) for FTPS and prints the
certificate's SHA-256 fingerprint. Compare that fingerprint with the one FileZilla shows on the first connection.

  --config FILE   outpost.toml to read [device] state_dir from (default: the usual config search)
  --out DIR       folder for cert.pem and key.pem (default: <state_dir>/tls of the config; without a config,
                  ./.outpost-state/tls of a quick-start folder, else --out is required)
  --hostname H    host name the certificate is for (default: this machine's host name)
  --force         replace an existing certificate and key
  --show          only print the fingerprint of the existing certificate in the folder`;

/**
 * Runs `outpost cert`; resolves to the exit status.
 *
 * @example
 * ```ts
 * const status = await certCommand(["--out", "/tmp/tls", "--hostname", "pi"]);
 * ```
 */
export async function certCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string" },
        out: { type: "string" },
        hostname: { type: "string" },
        force: { type: "boolean", default: false },
        show: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    console.error(`outpost cert: ${(e as Error).message}\n\n${HELP}`);
    return 64;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let dir = values.out;
  /** Whom the files belong to: the state folder's owner (the daemon's user) when run as root for a config. */
  let owner: { uid: number; gid: number } | null = null;
  try {
    let certPath: string | null = null;
    if (!dir) {
      let stateDir: string | null = null;
      const path = await findConfigPath(values.config);
      if (path !== null) {
        const cfg = await loadConfig(path);
        stateDir = cfg.device.stateDir;
        const tls = cfg.ftp?.tls;
        if (tls?.certPath) {
          // The config names its own pair: that is what the daemon serves and what a client should pin.
          if (!values.show) {
            console.error(
              `outpost cert: ${path} names its own certificate (ftp.tls.cert = ${tls.certPath}); outpost serves ` +
                "that one. Use --show to print its fingerprints, or --out DIR to make a new pair elsewhere.",
            );
            return 64;
          }
          certPath = tls.certPath;
        }
        dir = tls?.certDir ?? `${stateDir}/tls`;
        const st = await Deno.stat(stateDir).catch(() => null);
        if (st && Deno.uid() === 0 && st.uid !== null && st.uid !== 0) {
          owner = { uid: st.uid, gid: st.gid ?? st.uid };
        }
      } else if (await Deno.stat(".outpost-state").then((s) => s.isDirectory, () => false)) {
        stateDir = `${Deno.cwd()}/.outpost-state`; // the quick-start daemon's state in this folder
        dir = `${stateDir}/tls`;
      }
      if (stateDir === null) {
        console.error(
          "outpost cert: no config file was found, so there is no state folder to put it in: give --out DIR " +
            "(for example --out ./tls) or --config FILE.",
        );
        return 64;
      }
    }
    certPath ??= `${dir!.replace(/\/+$/, "")}/cert.pem`;
    if (values.show) {
      const pem = await Deno.readTextFile(certPath).catch((e) => {
        if (e instanceof Deno.errors.NotFound) {
          throw new Error(
            `there is no certificate at ${certPath} yet: run "outpost cert" to make one (the daemon also makes ` +
              "one at its first start with FTPS on).",
          );
        }
        throw e;
      });
      console.log([`Certificate: ${certPath}`, ...fingerprintLines(pem)].join("\n"));
      return 0;
    }
    const hostname = values.hostname ?? safeHostname();
    const pair = await createSelfSignedCertificate({ hostname });
    const paths = await writeCertificateFiles(dir!, pair, { overwrite: values.force });
    if (owner) {
      // Made by root for the daemon: hand the folder and both files to its user, or FTPS could not start.
      for (const p of [dir!, paths.certPath, paths.keyPath]) await Deno.chown(p, owner.uid, owner.gid);
    }
    console.log(
      [
        `Certificate: ${paths.certPath}`,
        `Private key: ${paths.keyPath} (mode 0600)`,
        `Host names:  ${hostname}, localhost, 127.0.0.1, ::1${
          hostname.endsWith(".local") ? "" : `, ${hostname}.local`
        }`,
        ...fingerprintLines(pair.certPem),
      ].join("\n"),
    );
    return 0;
  } catch (e) {
    console.error(`outpost cert: ${(e as Error).message}`);
    return 1;
  }
}

function safeHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "outpost";
  }
}
