/**
 * `outpost cert`: creates the self-signed FTPS certificate and prints its SHA-256 fingerprint.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadConfig } from "../config/config.ts";
import {
  certificateFingerprint,
  createSelfSignedCertificate,
  writeCertificateFiles,
} from "../net/certificate.ts";

const HELP = `Usage: outpost cert [--config FILE] [--out DIR] [--hostname H] [--force]

Creates a self-signed TLS certificate (cert.pem) and private key (key.pem, mode 0600) for FTPS and prints the
certificate's SHA-256 fingerprint. Compare that fingerprint with the one FileZilla shows on the first connection.

  --config FILE   outpost.toml to read [device] state_dir from (default: the usual config search)
  --out DIR       folder for cert.pem and key.pem (default: <state_dir>/tls)
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
  try {
    if (!dir) {
      let stateDir = "/var/lib/outpost";
      if (values.config || Deno.env.get("OUTPOST_CONFIG")) {
        stateDir = (await loadConfig(values.config)).device.stateDir;
      } else {
        try {
          stateDir = (await loadConfig()).device.stateDir;
        } catch {
          // No config file anywhere: use the default state folder.
        }
      }
      dir = `${stateDir}/tls`;
    }
    const certPath = `${dir.replace(/\/+$/, "")}/cert.pem`;
    if (values.show) {
      const fp = certificateFingerprint(await Deno.readTextFile(certPath));
      console.log(`Certificate: ${certPath}\nSHA-256 fingerprint: ${fp}`);
      return 0;
    }
    const hostname = values.hostname ?? safeHostname();
    const pair = await createSelfSignedCertificate({ hostname });
    const paths = await writeCertificateFiles(dir, pair, { overwrite: values.force });
    console.log(
      [
        `Certificate: ${paths.certPath}`,
        `Private key: ${paths.keyPath} (mode 0600)`,
        `Host names:  ${hostname}, localhost, 127.0.0.1, ::1${
          hostname.endsWith(".local") ? "" : `, ${hostname}.local`
        }`,
        `SHA-256 fingerprint: ${pair.fingerprint}`,
        "",
        "FileZilla shows this fingerprint on the first connection: accept it only if they match.",
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
