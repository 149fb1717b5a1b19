/**
 * Reload is transactional for FTP: a reload whose new control port is taken (the implicit FTPS port unchanged)
 * fails, and exactly the old listeners serve again — the half-started new server released the implicit port.
 */
import assert from "node:assert/strict";
import { hashPassword } from "../src/config/password.ts";
import { parseConfig } from "../src/app/outpost_config.ts";
import { OutpostDaemon } from "../src/daemon/outpost_daemon.ts";
import { FtpControl } from "./helpers/ftp_fixture.ts";

const HOST = "127.0.0.1";

function freePort(): number {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function greets(port: number): Promise<boolean> {
  try {
    const c = await FtpControl.connect(HOST, port);
    try {
      return (await c.reply(5000)).code === 220;
    } finally {
      c.close();
    }
  } catch {
    return false;
  }
}

async function tlsGreets(port: number, certPem: string): Promise<boolean> {
  try {
    const t = await Deno.connectTls({ hostname: HOST, port, caCerts: [certPem] });
    try {
      const buf = new Uint8Array(64);
      const n = await t.read(buf);
      return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("220 ");
    } finally {
      t.close();
    }
  } catch {
    return false;
  }
}

Deno.test("a reload whose FTP port is taken leaves exactly the old listeners serving", async () => {
  const base = await Deno.makeTempDir({ prefix: "outpost_ftp_reload_" });
  const taken = Deno.listen({ hostname: HOST, port: 0 });
  let daemon: OutpostDaemon | null = null;
  try {
    await Deno.mkdir(`${base}/root`);
    const hash = await hashPassword("secret", 1000);
    const [port, implicit] = [freePort(), freePort()];
    const config = (ftpPort: number) =>
      parseConfig(
        `[device]\nname = "t"\nstate_dir = "${base}/state"\n\n` +
          `[ftp]\nhost = "${HOST}"\nport = ${ftpPort}\nactive = false\n\n` +
          `[[ftp.users]]\nname = "alice"\npassword_hash = "${hash}"\nroot = "${base}/root"\npermissions = ["all"]\n\n` +
          `[ftp.tls]\nmode = "optional"\nimplicit_port = ${implicit}\ncert_dir = "${base}/tls"\n\n` +
          `[alerts]\nenabled = false\n`,
        `${base}/outpost.toml`,
      );
    daemon = await OutpostDaemon.start(config(port));
    const certPem = await Deno.readTextFile(`${base}/tls/cert.pem`);
    assert.ok(await greets(port));
    assert.ok(await tlsGreets(implicit, certPem));
    await assert.rejects(daemon.reload(config((taken.addr as Deno.NetAddr).port)), /FTP server not started/);
    assert.equal(daemon.ftp?.port, port);
    assert.equal(daemon.ftp?.implicitPort, implicit);
    assert.ok(await greets(port), "the old control port does not serve after the failed reload");
    assert.ok(await tlsGreets(implicit, certPem), "the old implicit FTPS port does not serve");
  } finally {
    taken.close();
    await daemon?.stop(0);
    await Deno.remove(base, { recursive: true });
  }
});
