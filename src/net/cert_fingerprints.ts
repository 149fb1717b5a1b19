/**
 * A certificate's fingerprint in the forms the FTPS clients people use show or take: FileZilla's SHA-256 (lower-case
 * hex pairs), lftp's `ssl:verify-certificate/<SHA-1>` setting, curl's `--pinnedpubkey sha256//<base64>` public-key
 * pin, and OpenSSL's `-fingerprint -sha256` line.
 *
 * @module
 */

import { createHash, X509Certificate } from "node:crypto";

/**
 * The fingerprints of one certificate.
 *
 * @example
 * ```ts
 * declare const pem: string;
 * const f: CertFingerprints = certFingerprints(pem);
 * console.log(f.lftpSetting); // "set ssl:verify-certificate/2A:F8:...:5E no"
 * ```
 */
export interface CertFingerprints {
  /** SHA-256 of the certificate, upper-case hex pairs joined by ":" (OpenSSL's form). */
  sha256: string;
  /** SHA-1 of the certificate, upper-case hex pairs (the form lftp prints and takes). */
  sha1: string;
  /** SHA-256 of the public key (SubjectPublicKeyInfo), base64: curl's pin. */
  spkiSha256Base64: string;
  /** FileZilla's "SHA-256:" line. */
  filezilla: string;
  /** The lftp command that trusts exactly this certificate. */
  lftpSetting: string;
  /** curl's option that pins this key. */
  curlPin: string;
}

/**
 * Computes the fingerprints of the first certificate in `pem`.
 *
 * @example
 * ```ts
 * const f = certFingerprints(await Deno.readTextFile("/var/lib/outpost/tls/cert.pem"));
 * console.log(f.filezilla); // "SHA-256: 3c:d7:..."
 * ```
 */
export function certFingerprints(pem: string): CertFingerprints {
  const cert = new X509Certificate(pem);
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  const sha256 = cert.fingerprint256.toUpperCase();
  const sha1 = cert.fingerprint.toUpperCase();
  const spkiSha256Base64 = createHash("sha256").update(spki).digest("base64");
  return {
    sha256,
    sha1,
    spkiSha256Base64,
    filezilla: `SHA-256: ${sha256.toLowerCase()}`,
    lftpSetting: `set ssl:verify-certificate/${sha1} no`,
    curlPin: `--pinnedpubkey 'sha256//${spkiSha256Base64}'`,
  };
}

/**
 * The lines `outpost cert` prints for `pem`.
 *
 * @example
 * ```ts
 * declare const pem: string;
 * console.log(fingerprintLines(pem).join("\n"));
 * ```
 */
export function fingerprintLines(pem: string): string[] {
  const f = certFingerprints(pem);
  return [
    "Fingerprints (accept the certificate in a client only if they match):",
    `  FileZilla  ${f.filezilla}`,
    `  lftp       ${f.lftpSetting}   (SHA-1, as lftp prints it; trusts exactly this certificate)`,
    `  curl       ${f.curlPin}   (with -k: curl then checks the key instead of a CA)`,
    `  openssl    SHA256 Fingerprint=${f.sha256}`,
  ];
}
