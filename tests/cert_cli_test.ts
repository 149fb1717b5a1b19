// `outpost cert` (issue 13, item 4): without a config it writes nothing under /var/lib, and it prints the
// fingerprint in the forms FileZilla, lftp and curl show or take.
import assert from "node:assert/strict";
import { findPeer, skipWithout } from "./helpers/peers.ts";

import { fieldUser, SKIP_FIELD } from "./helpers/field_user.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const openssl = findPeer("openssl");

async function outpost(args: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: "null",
    cwd,
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

async function sh(script: string): Promise<string> {
  const r = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped", stderr: "inherit" })
    .output();
  assert.equal(r.code, 0);
  return new TextDecoder().decode(r.stdout).trim();
}

Deno.test("cert: without a config and without --out it writes nothing and says what to pass", async () => {
  const dir = await Deno.makeTempDir();
  const before = await Deno.stat("/var/lib/outpost/tls").then(() => true, () => false);
  try {
    const r = await outpost(["cert"], dir);
    assert.equal(r.code, 64, r.out + r.err);
    assert.match(r.err, /no config file was found, so there is no state folder to put it in: give --out DIR/);
    assert.equal(await Deno.stat("/var/lib/outpost/tls").then(() => true, () => false), before);
    // A quick-start folder: its state is used.
    await Deno.mkdir(`${dir}/.outpost-state`);
    const q = await outpost(["cert", "--hostname", "pi"], dir);
    assert.equal(q.code, 0, q.err);
    assert.match(q.out, new RegExp(`Certificate: ${dir}/\\.outpost-state/tls/cert\\.pem`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "cert: fingerprints as FileZilla (SHA-256), lftp (SHA-1 setting) and curl (public key pin) take them",
  ignore: skipWithout(openssl),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const r = await outpost(["cert", "--out", `${dir}/tls`, "--hostname", "pi"], dir);
      assert.equal(r.code, 0, r.err);
      const pem = `${dir}/tls/cert.pem`;
      const sha256 = (await sh(`openssl x509 -in ${pem} -noout -fingerprint -sha256`)).split("=")[1];
      const sha1 = (await sh(`openssl x509 -in ${pem} -noout -fingerprint -sha1`)).split("=")[1];
      const pin = await sh(
        `openssl x509 -in ${pem} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`,
      );
      assert.ok(r.out.includes(`FileZilla  SHA-256: ${sha256.toLowerCase()}`), r.out);
      assert.ok(r.out.includes(`lftp       set ssl:verify-certificate/${sha1} no`), r.out);
      assert.ok(r.out.includes(`curl       --pinnedpubkey 'sha256//${pin}'`), r.out);
      assert.ok(r.out.includes(`openssl    SHA256 Fingerprint=${sha256}`), r.out);
      const show = await outpost(["cert", "--show", "--out", `${dir}/tls`], dir);
      assert.equal(show.code, 0, show.err);
      assert.ok(show.out.includes(`lftp       set ssl:verify-certificate/${sha1} no`), show.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cert: follows [ftp.tls] cert_dir, and run by root hands the pair to the daemon's user (who owns the state)",
  ignore: SKIP_FIELD,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-cert-dir-" });
    try {
      const user = await fieldUser();
      await Deno.mkdir(`${dir}/state`);
      await Deno.chown(`${dir}/state`, user.uid, user.gid);
      await Deno.writeTextFile(
        `${dir}/outpost.toml`,
        `[device]\nstate_dir = "${dir}/state"\n[ftp]\nport = 2121\n[ftp.tls]\nmode = "optional"\ncert_dir = "${dir}/mytls"\n`,
      );
      const r = await outpost(["cert", "--config", `${dir}/outpost.toml`], dir);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`Certificate: ${dir}/mytls/cert\\.pem`));
      for (const p of ["mytls", "mytls/cert.pem", "mytls/key.pem"]) {
        const st = await Deno.stat(`${dir}/${p}`);
        assert.equal(st.uid, user.uid, `${p} belongs to the daemon's user`);
      }
      const shown = await outpost(["cert", "--show", "--config", `${dir}/outpost.toml`], dir);
      assert.equal(shown.code, 0, shown.err);
      const fp = (t: string) => /SHA256 Fingerprint=((?:[0-9A-F]{2}:){31}[0-9A-F]{2})/.exec(t)?.[1];
      assert.ok(fp(r.out) && fp(r.out) === fp(shown.out), `${r.out}\n---\n${shown.out}`);
      await Deno.remove(`${dir}/mytls`, { recursive: true });
      const missing = await outpost(["cert", "--show", "--config", `${dir}/outpost.toml`], dir);
      assert.equal(missing.code, 1);
      assert.match(missing.err, /no certificate at .*mytls\/cert\.pem yet: run "outpost cert"/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
