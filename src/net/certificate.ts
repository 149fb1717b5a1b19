/**
 * Self-signed certificates for FTPS, and their SHA-256 fingerprints.
 *
 * The X.509 work uses the npm library `@peculiar/x509` (PeculiarVentures, built on `@peculiar/asn1-schema`) with
 * Deno's own WebCrypto for the key pair and the signature. It was chosen over the `openssl` command because the
 * daemon then creates its certificate at first start without `--allow-run` and without depending on a system
 * binary, and over hand-written DER because certificate encoding is exactly where a maintained, widely used
 * library beats new code. The library needs the `reflect-metadata` polyfill; both are loaded lazily, only when a
 * certificate is created, so the serving process does not carry them otherwise.
 *
 * Keys are ECDSA P-256 (fast on a Raspberry Pi, accepted by FileZilla, curl, lftp/GnuTLS, Python ssl and rustls).
 * The key file is written with mode 0600.
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";

/**
 * A certificate and its private key, PEM-encoded, with the certificate's SHA-256 fingerprint.
 *
 * @example
 * ```ts
 * const pair: CertificatePair = await createSelfSignedCertificate({ hostname: "pi-freezer" });
 * console.log(`Check this fingerprint in your FTP client: ${pair.fingerprint}`);
 * ```
 */
export interface CertificatePair {
  /** PEM certificate. */
  certPem: string;
  /** PEM private key (PKCS#8). Keep it secret: write it with {@link writeCertificateFiles}. */
  keyPem: string;
  /** SHA-256 fingerprint in FileZilla's form, "AB:CD:...". */
  fingerprint: string;
}

/**
 * Options for {@link createSelfSignedCertificate}.
 *
 * @example
 * ```ts
 * const opts: SelfSignedOptions = { hostname: "pi-freezer", days: 365 };
 * const pair = await createSelfSignedCertificate(opts);
 * console.log(pair.fingerprint);
 * ```
 */
export interface SelfSignedOptions {
  /** The board's host name (e.g. "pi-freezer"); it becomes the subject CN and the first SAN. */
  hostname: string;
  /** Validity in days from now; default 7300 (20 years: the certificate is pinned, not rotated). */
  days?: number;
  /** Clock to use (tests); default the system clock. */
  now?: Date;
}

const HOST_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/**
 * A subject alternative name: a DNS name or an IP address.
 *
 * @example
 * ```ts
 * const san: SanEntry = { type: "ip", value: "127.0.0.1" };
 * console.log(`${san.type}:${san.value}`);
 * ```
 */
export interface SanEntry {
  /** Whether `value` is a DNS name or an IP address. */
  type: "dns" | "ip";
  /** The name, or the IP address in text form (IPv4 dotted or IPv6). */
  value: string;
}

/**
 * The subject alternative names a board's certificate carries: the host name, `<host>.local` (mDNS), localhost,
 * 127.0.0.1 and ::1. Throws when `hostname` is not a valid host name or IP address.
 *
 * @example
 * ```ts
 * certificateSans("pi"); // [{type:"dns",value:"pi"},{type:"dns",value:"pi.local"},{type:"dns",value:"localhost"},...]
 * ```
 */
export function certificateSans(hostname: string): SanEntry[] {
  const h = hostname.trim().replace(/\.$/, "");
  const out: SanEntry[] = [];
  const add = (type: "dns" | "ip", value: string) => {
    if (!out.some((e) => e.type === type && e.value.toLowerCase() === value.toLowerCase())) {
      out.push({ type, value });
    }
  };
  if (IPV4_RE.test(h) || (h.includes(":") && /^[0-9a-fA-F:.]+$/.test(h))) {
    add("ip", h);
  } else if (HOST_RE.test(h)) {
    add("dns", h);
    if (!h.toLowerCase().endsWith(".local") && h.toLowerCase() !== "localhost") add("dns", `${h}.local`);
  } else {
    throw new Error(`Certificate not created: "${hostname}" is not a valid host name.`);
  }
  add("dns", "localhost");
  add("ip", "127.0.0.1");
  add("ip", "::1");
  return out;
}

function pemBody(pem: string, label: string): Uint8Array {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`);
  const m = re.exec(pem);
  if (!m) throw new Error(`Fingerprint not computed: the text holds no PEM ${label.toLowerCase()}.`);
  const bin = atob(m[1].replace(/\s+/g, ""));
  const der = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) der[i] = bin.charCodeAt(i);
  return der;
}

function toPem(der: Uint8Array, label: string): string {
  let bin = "";
  for (let i = 0; i < der.length; i++) bin += String.fromCharCode(der[i]);
  const b64 = btoa(bin).replace(/.{64}/g, "$&\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/**
 * SHA-256 fingerprint of the first certificate in `pem`, as FileZilla and `openssl x509 -fingerprint -sha256`
 * show it: 32 upper-case hex bytes joined by ":".
 *
 * @example
 * ```ts
 * console.log(certificateFingerprint(await Deno.readTextFile("/var/lib/outpost/tls/cert.pem")));
 * // "3F:A1:...:9C"
 * ```
 */
export function certificateFingerprint(pem: string): string {
  const der = pemBody(pem, "CERTIFICATE");
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return hex.match(/../g)!.join(":");
}

/**
 * Creates a self-signed ECDSA P-256 server certificate for `hostname` (SANs from {@link certificateSans}).
 *
 * @example
 * ```ts
 * const pair = await createSelfSignedCertificate({ hostname: "pi-freezer" });
 * console.log(pair.fingerprint);
 * ```
 */
export async function createSelfSignedCertificate(opts: SelfSignedOptions): Promise<CertificatePair> {
  const sans = certificateSans(opts.hostname);
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(crypto);
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = opts.now ?? new Date();
  const serial = randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x01; // positive and without a leading zero byte
  // A board without a real-time clock may boot with a stale date: start validity well before "now".
  const notBefore = new Date(Math.min(now.getTime(), Date.UTC(2025, 0, 1)) - 86_400_000);
  const notAfter = new Date(now.getTime() + (opts.days ?? 7300) * 86_400_000);
  const cn = sans[0].value.replace(/[,+="<>#;\\]/g, "");
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString("hex"),
    name: `CN=${cn}, O=outpost`,
    notBefore,
    notAfter,
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sans.map((s) => ({ type: s.type, value: s.value }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = toPem(new Uint8Array(cert.rawData), "CERTIFICATE");
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const keyPem = toPem(pkcs8, "PRIVATE KEY");
  pkcs8.fill(0);
  return { certPem, keyPem, fingerprint: certificateFingerprint(certPem) };
}

/**
 * Where {@link writeCertificateFiles} put the files.
 *
 * @example
 * ```ts
 * declare const pair: CertificatePair;
 * const { certPath, keyPath }: CertificatePaths = await writeCertificateFiles("/var/lib/outpost/tls", pair);
 * console.log(certPath, keyPath);
 * ```
 */
export interface CertificatePaths {
  /** `<dir>/cert.pem`: the PEM certificate. */
  certPath: string;
  /** `<dir>/key.pem`: the PEM private key (mode 0600). */
  keyPath: string;
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, text, { mode, createNew: true });
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Writes `cert.pem` (mode 0644) and `key.pem` (mode 0600) into `dir` (created with mode 0700 if missing), each
 * atomically. Refuses to replace existing files unless `overwrite` is set.
 *
 * @example
 * ```ts
 * declare const pair: CertificatePair;
 * const paths = await writeCertificateFiles("/var/lib/outpost/tls", pair);
 * console.log(paths.certPath, paths.keyPath);
 * ```
 */
export async function writeCertificateFiles(
  dir: string,
  pair: Pick<CertificatePair, "certPem" | "keyPem">,
  opts: { overwrite?: boolean } = {},
): Promise<CertificatePaths> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const certPath = `${dir.replace(/\/+$/, "")}/cert.pem`;
  const keyPath = `${dir.replace(/\/+$/, "")}/key.pem`;
  if (!opts.overwrite) {
    for (const p of [certPath, keyPath]) {
      if (await exists(p)) {
        throw new Error(`Certificate not written: ${p} already exists (use --force to replace it).`);
      }
    }
  }
  await writeAtomic(keyPath, pair.keyPem, 0o600);
  await writeAtomic(certPath, pair.certPem, 0o644);
  return { certPath, keyPath };
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * What {@link ensureCertificate} found or made.
 *
 * @example
 * ```ts
 * const c: EnsuredCertificate = await ensureCertificate("/var/lib/outpost/tls", "pi-freezer");
 * if (c.created) console.log(`New FTPS certificate, fingerprint ${c.fingerprint}`);
 * ```
 */
export interface EnsuredCertificate extends CertificatePaths {
  /** SHA-256 fingerprint of the certificate, "AB:CD:..." (what FTP clients show on first connect). */
  fingerprint: string;
  /** True when the files were created by this call. */
  created: boolean;
}

/**
 * Returns the certificate in `dir`, creating a self-signed one for `hostname` when there is none (first start).
 * Throws when only one of the two files exists (a half-configured directory is not silently replaced).
 *
 * @example
 * ```ts
 * const c = await ensureCertificate("/var/lib/outpost/tls", Deno.hostname());
 * if (c.created) console.log(`New certificate, SHA-256 fingerprint ${c.fingerprint}`);
 * ```
 */
export async function ensureCertificate(dir: string, hostname: string): Promise<EnsuredCertificate> {
  const certPath = `${dir.replace(/\/+$/, "")}/cert.pem`;
  const keyPath = `${dir.replace(/\/+$/, "")}/key.pem`;
  const [haveCert, haveKey] = [await exists(certPath), await exists(keyPath)];
  if (haveCert && haveKey) {
    return {
      certPath,
      keyPath,
      fingerprint: certificateFingerprint(await Deno.readTextFile(certPath)),
      created: false,
    };
  }
  if (haveCert || haveKey) {
    throw new Error(
      `Certificate not created: ${haveCert ? keyPath : certPath} is missing but ${
        haveCert ? certPath : keyPath
      } exists; remove it or restore the pair.`,
    );
  }
  const pair = await createSelfSignedCertificate({ hostname });
  const paths = await writeCertificateFiles(dir, pair);
  return { ...paths, fingerprint: pair.fingerprint, created: true };
}
