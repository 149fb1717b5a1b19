/**
 * Self-signed certificates (src/net/certificate.ts) and `outpost cert`, checked with `openssl x509`.
 */

import assert from "node:assert/strict";
import {
  certificateFingerprint,
  certificateSans,
  createSelfSignedCertificate,
  ensureCertificate,
  writeCertificateFiles,
} from "../src/net/certificate.ts";
import { certCommand } from "../src/cli/cert_command.ts";
import { findPeer, skipWithout } from "./helpers/peers.ts";

const OPENSSL = findPeer("openssl");

async function openssl(args: string[]): Promise<string> {
  const out = await new Deno.Command(OPENSSL!, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `openssl ${args.join(" ")} failed:\n${text}`);
  return text;
}

Deno.test("certificateSans: host, host.local, localhost and both loopback addresses; bad names refused", () => {
  assert.deepEqual(certificateSans("pi-freezer"), [
    { type: "dns", value: "pi-freezer" },
    { type: "dns", value: "pi-freezer.local" },
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
  ]);
  assert.deepEqual(certificateSans("board.local").map((s) => s.value), [
    "board.local",
    "localhost",
    "127.0.0.1",
    "::1",
  ]);
  assert.deepEqual(certificateSans("192.168.1.20")[0], { type: "ip", value: "192.168.1.20" });
  assert.throws(() => certificateSans("bad name"), /not a valid host name/);
  assert.throws(() => certificateSans("a/b"), /not a valid host name/);
});

Deno.test({
  name: "createSelfSignedCertificate: openssl reads the SANs, key usage and key; fingerprints agree",
  ignore: skipWithout(OPENSSL),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const pair = await createSelfSignedCertificate({ hostname: "pi-freezer" });
      const { certPath, keyPath } = await writeCertificateFiles(dir, pair);
      const text = await openssl(["x509", "-in", certPath, "-noout", "-text"]);
      assert.match(text, /Subject: CN\s*=\s*pi-freezer/);
      assert.match(
        text,
        /DNS:pi-freezer, DNS:pi-freezer\.local, DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/,
      );
      assert.match(text, /ecdsa-with-SHA256/);
      assert.match(text, /CA:FALSE/);
      assert.match(text, /TLS Web Server Authentication/);
      const fp = await openssl(["x509", "-in", certPath, "-noout", "-fingerprint", "-sha256"]);
      assert.equal(fp.trim().split("=")[1], pair.fingerprint);
      assert.match(pair.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      assert.equal(certificateFingerprint(await Deno.readTextFile(certPath)), pair.fingerprint);
      // The key matches the certificate.
      const pubFromKey = await openssl(["pkey", "-in", keyPath, "-pubout"]);
      const pubFromCert = await openssl(["x509", "-in", certPath, "-noout", "-pubkey"]);
      assert.equal(pubFromKey.trim(), pubFromCert.trim());
      assert.equal((await Deno.stat(keyPath)).mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(certPath)).mode! & 0o777, 0o644);
      await openssl(["verify", "-CAfile", certPath, certPath]);
      await assert.rejects(writeCertificateFiles(dir, pair), /already exists/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("certificateFingerprint: refuses text without a certificate", () => {
  assert.throws(() => certificateFingerprint("hello"), /holds no PEM certificate/);
});

Deno.test("ensureCertificate: creates once, then returns the same; a lone key is not silently replaced", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await ensureCertificate(`${dir}/tls`, "pi");
    assert.equal(a.created, true);
    const b = await ensureCertificate(`${dir}/tls`, "pi");
    assert.equal(b.created, false);
    assert.equal(b.fingerprint, a.fingerprint);
    await Deno.remove(a.certPath);
    await assert.rejects(ensureCertificate(`${dir}/tls`, "pi"), /cert\.pem is missing/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("outpost cert --out: writes the pair, prints the fingerprint; refuses to overwrite without --force", async () => {
  const dir = await Deno.makeTempDir();
  const lines: string[] = [];
  const origLog = console.log;
  const origErr = console.error;
  console.log = (...a: unknown[]) => lines.push(a.join(" "));
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    assert.equal(await certCommand(["--out", dir, "--hostname", "board"]), 0);
    const fp = certificateFingerprint(await Deno.readTextFile(`${dir}/cert.pem`));
    assert.ok(lines.some((l) => l.includes(`SHA256 Fingerprint=${fp}`)), lines.join("\n"));
    assert.ok(lines.some((l) => l.includes(`FileZilla  SHA-256: ${fp.toLowerCase()}`)), lines.join("\n"));
    assert.equal(await certCommand(["--out", dir, "--hostname", "board"]), 1);
    assert.match(lines.at(-1)!, /already exists/);
    assert.equal(await certCommand(["--out", dir, "--hostname", "board", "--force"]), 0);
    const fp2 = certificateFingerprint(await Deno.readTextFile(`${dir}/cert.pem`));
    assert.notEqual(fp2, fp);
    assert.equal(await certCommand(["--out", dir, "--show"]), 0);
    assert.ok(lines.at(-1)!.includes(fp2));
    assert.equal(await certCommand(["--bogus"]), 64);
  } finally {
    console.log = origLog;
    console.error = origErr;
    await Deno.remove(dir, { recursive: true });
  }
});
