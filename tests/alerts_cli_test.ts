import assert from "node:assert/strict";
import { parseTomlDocument } from "../src/app/outpost_config.ts";

const FIX = new URL("./fixtures/sysfs/rpi4", import.meta.url).pathname;
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function outpost(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env: { OUTPOST_LOG: "off", NO_COLOR: "1", ...env },
    stdin: "null",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("outpost sensors lists the fake board's sensors, readings and pasteable tables", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = `${dir}/outpost.toml`;
    await Deno.writeTextFile(
      config,
      `[device]\nname = "pi-test"\n[ftp]\nenabled = false\n[alerts]\nenabled = false\n` +
        `[sensors.freezer]\ntype = "w1"\nid = "28-0316a2795aff"\n[sensors.gone]\ntype = "file"\npath = "${dir}/nope"\n`,
    );
    const t = await outpost(["sensors", "--sysfs-root", FIX, "--config", config, "--toml"]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /\[sensors\.ds18b20_0316a2795aff\]\ntype = "w1"\nid = "28-0316a2795aff"/);
    // --toml prints nothing but TOML (readings as comments), so it can be appended to outpost.toml as it is.
    parseTomlDocument(t.stdout);
    assert.match(t.stdout, /^# .*: 23\.13 °C$/m);
    const r = await outpost(["sensors", "--sysfs-root", FIX, "--config", config]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Sensors in your config/);
    assert.match(r.stdout, /freezer\s+w1\s+23\.13 °C/);
    assert.match(r.stdout, /gone\s+file\s+error: .*nope does not exist/);
    assert.match(r.stdout, /soc\s+thermal\s+48\.31 °C\s+Thermal zone thermal_zone0 \(cpu-thermal\)/);
    const j = await outpost(["sensors", "--sysfs-root", FIX, "--config", config, "--json"]);
    const parsed = JSON.parse(j.stdout);
    assert.equal(parsed.found.find((s: { name: string }) => s.name === "undervoltage").value, 0);
    assert.equal(parsed.configured[0].value, 23.125);
    const bad = await outpost(["sensors", "--config", `${dir}/missing.toml`]);
    assert.equal(bad.code, 78);
    assert.match(bad.stderr, /cannot be read/);
    const help = await outpost(["sensors", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--sysfs-root DIR/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
