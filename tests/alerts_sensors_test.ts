import assert from "node:assert/strict";
import {
  fingerprintFile,
  parseDfOutput,
  parseHwmon,
  parseIio,
  parseLoadavg,
  parseMeminfo,
  parseNumberText,
  parseThermal,
  parseThrottled,
  parseW1Slave,
  readDiskSpace,
  readSmallFile,
  runCommand,
  SensorReadError,
} from "../src/alerts/sensor_readers.ts";
import { SensorSource } from "../src/alerts/sensor_source.ts";
import { discoverSensors, makeSensorConfig, sensorTableToml } from "../src/alerts/sensor_discovery.ts";

const FIX = new URL("./fixtures/sysfs/", import.meta.url).pathname;
const RPI4 = FIX + "rpi4";
const ERR = FIX + "errors/";

async function fixture(p: string): Promise<string> {
  return await readSmallFile(p);
}

async function rejects(fn: () => unknown, re: RegExp): Promise<void> {
  await assert.rejects(async () => await fn(), (e: unknown) => {
    assert.ok(e instanceof SensorReadError, `expected SensorReadError, got ${e}`);
    assert.match((e as Error).message, re);
    return true;
  });
}

Deno.test("plain numbers: valid, empty, garbage, binary", async () => {
  assert.equal(parseNumberText(" 42.5\n", "x"), 42.5);
  assert.equal(parseNumberText("-3", "x"), -3);
  assert.equal(parseNumberText("1e3", "x"), 1000);
  await rejects(async () => parseNumberText(await fixture(ERR + "empty"), "level"), /level is empty/);
  await rejects(
    async () => parseNumberText(await fixture(ERR + "garbage"), "level"),
    /does not hold a number/,
  );
  await rejects(
    async () => parseNumberText(await fixture(ERR + "binary"), "level"),
    /does not hold a number/,
  );
  assert.throws(() => parseNumberText("12abc", "x"), SensorReadError);
  assert.throws(() => parseNumberText("NaN", "x"), SensorReadError);
  assert.throws(() => parseNumberText("Infinity", "x"), SensorReadError);
});

Deno.test("thermal zone millidegrees, negative, fraction rejected", async () => {
  assert.equal(parseThermal(await fixture(RPI4 + "/sys/class/thermal/thermal_zone0/temp")), 48.312);
  assert.equal(parseThermal(await fixture(ERR + "thermal_negative")), -12.5);
  await rejects(async () => parseThermal(await fixture(ERR + "thermal_fraction")), /whole number/);
  await rejects(async () => parseThermal(await fixture(ERR + "empty")), /empty/);
});

Deno.test("hwmon attributes are scaled by kind", () => {
  assert.equal(parseHwmon("temp1_input", "48312"), 48.312);
  assert.equal(parseHwmon("in0_input", "5080"), 5.08);
  assert.equal(parseHwmon("fan1_input", "3120"), 3120);
  assert.equal(parseHwmon("curr1_input", "1500"), 1.5);
  assert.equal(parseHwmon("power1_input", "2500000"), 2.5);
  assert.equal(parseHwmon("in0_lcrit_alarm", "1"), 1);
  assert.throws(() => parseHwmon("temp1_input", "oops"), SensorReadError);
});

Deno.test("IIO raw with scale and offset", () => {
  assert.equal(parseIio("1000", "0.5", "-10"), 495);
  assert.equal(parseIio("1000", null, null), 1000);
  assert.equal(parseIio("-20", "0.25", null), -5);
  assert.throws(() => parseIio("", "1", null), /raw value is empty/);
  assert.throws(() => parseIio("10", "x", null), /scale does not hold a number/);
});

Deno.test("DS18B20 w1_slave: good, negative, CRC NO, 85000, all-zero, truncated, empty", async () => {
  const w1 = RPI4 + "/sys/bus/w1/devices/";
  assert.equal(parseW1Slave(await fixture(w1 + "28-0316a2795aff/w1_slave")), 23.125);
  assert.equal(parseW1Slave(await fixture(w1 + "28-000005e2fdc3/w1_slave")), -10.125);
  assert.equal(parseW1Slave(await fixture(ERR + "w1_minus55")), -55);
  await rejects(async () => parseW1Slave(await fixture(ERR + "w1_crc_no")), /CRC/);
  await rejects(async () => parseW1Slave(await fixture(ERR + "w1_85000")), /power-on/);
  await rejects(async () => parseW1Slave(await fixture(ERR + "w1_all_zero")), /all-zero/);
  await rejects(async () => parseW1Slave(await fixture(ERR + "w1_truncated")), /truncated/);
  await rejects(async () => parseW1Slave(await fixture(ERR + "empty")), /returned nothing/);
  await rejects(async () => parseW1Slave(await fixture(ERR + "garbage")), /truncated|CRC/);
});

Deno.test("/proc/loadavg and /proc/meminfo", async () => {
  const load = await fixture(RPI4 + "/proc/loadavg");
  assert.equal(parseLoadavg(load, 1), 0.52);
  assert.equal(parseLoadavg(load, 5), 0.41);
  assert.equal(parseLoadavg(load, 15), 0.30);
  await rejects(async () => parseLoadavg(await fixture(ERR + "loadavg_short")), /expected format/);
  const mem = await fixture(RPI4 + "/proc/meminfo");
  assert.equal(parseMeminfo(mem, "MemAvailable"), 3411200 * 1024);
  await rejects(
    async () => parseMeminfo(await fixture(ERR + "meminfo_no_available"), "MemAvailable"),
    /no MemAvailable/,
  );
});

Deno.test("Raspberry Pi get_throttled flags", async () => {
  const t = await fixture(RPI4 + "/sys/devices/platform/soc/soc:firmware/get_throttled");
  assert.equal(parseThrottled(t, "undervoltage"), 1);
  assert.equal(parseThrottled(t, "throttled"), 1);
  assert.equal(parseThrottled(t, "freq_capped"), 0);
  assert.equal(parseThrottled(t, "undervoltage_occurred"), 1);
  assert.equal(parseThrottled("0\n", "undervoltage"), 0);
  assert.equal(parseThrottled("0x20000", "freq_capped_occurred"), 1);
  await rejects(async () => parseThrottled(await fixture(ERR + "throttled_garbage"), "undervoltage"), /hex/);
  assert.throws(() => parseThrottled("", "undervoltage"), /empty/);
});

Deno.test("missing file is a SensorReadError naming the path", async () => {
  await rejects(() => readSmallFile(FIX + "nope/temp"), /nope\/temp does not exist/);
});

Deno.test("disk space via statfs, df output parser, missing path", async () => {
  const d = await readDiskSpace("/");
  assert.ok(d.totalBytes > 0 && d.availableBytes >= 0 && d.availableBytes <= d.totalBytes);
  assert.deepEqual(
    parseDfOutput("Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/root 1000 250 750 25% /\n"),
    { totalBytes: 1000, availableBytes: 750 },
  );
  assert.throws(() => parseDfOutput("Filesystem\n"), SensorReadError);
  await rejects(() => readDiskSpace("/definitely/not/here"), /does not exist/);
});

Deno.test("command sensor: stdout, non-zero exit, timeout kills the child", async () => {
  assert.equal((await runCommand(["/bin/sh", "-c", "echo 21.5"], 5000)).trim(), "21.5");
  await rejects(() => runCommand(["/bin/sh", "-c", "exit 3"], 5000), /status 3/);
  await rejects(() => runCommand(["/bin/sh", "-c", "exec sleep 30"], 200), /timed out after 200 ms/);
  await rejects(() => runCommand(["/nonexistent/binary"], 1000), /could not be started/);
  // Output larger than the cap is cut and the child killed, not buffered.
  const big = await runCommand(["/bin/sh", "-c", "yes 1 | head -c 100000"], 5000, 64).catch((e) => e);
  assert.ok(typeof big === "string" ? big.length <= 64 : big instanceof SensorReadError);
});

Deno.test("file fingerprint: streamed SHA-256, re-hash only on change", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = `${dir}/watched`;
    await Deno.writeTextFile(p, "hello");
    const buf = new Uint8Array(4);
    const a = await fingerprintFile(p, null, buf);
    assert.equal(a.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert.equal(a.size, 5);
    assert.equal(await fingerprintFile(p, a, buf), a, "unchanged file is not re-hashed");
    await Deno.writeTextFile(p, "hello world");
    const b = await fingerprintFile(p, a, buf);
    assert.notEqual(b.sha256, a.sha256);
    await rejects(() => fingerprintFile(`${dir}/gone`, null, buf), /does not exist/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SensorSource resolves selectors in a fake sysfs tree", async () => {
  const read = (type: Parameters<typeof makeSensorConfig>[1], f: Parameters<typeof makeSensorConfig>[2]) =>
    new SensorSource(makeSensorConfig("x", type, f), RPI4).read();
  assert.equal(await read("thermal", { zone: "cpu-thermal" }), 48.312);
  assert.equal(await read("thermal", { zone: "0" }), 48.312);
  assert.equal(await read("hwmon", { chip: "rpi_volt", input: "in0_lcrit_alarm" }), 0);
  assert.equal(await read("hwmon", { chip: "pwmfan", input: "fan1_input" }), 3120);
  assert.equal(await read("iio", { device: "bme280", channel: "in_humidityrelative" }), 42);
  assert.equal(await read("iio", { device: "bme280", channel: "in_voltage0" }), 4500);
  assert.equal(await read("w1", { id: "28-000005e2fdc3" }), -10.125);
  assert.equal(await read("w1", {}), -10.125, "first probe in sorted order");
  assert.equal(await read("rpi_throttled", { flag: "undervoltage" }), 1);
  assert.equal(await read("load", { minutes: 5 }), 0.41);
  assert.ok(Math.abs((await read("memory", { measure: "available_percent" })) - 87.818) < 0.01);
  assert.equal(await read("thermal", { zone: "cpu-thermal", scale: 1.8, offset: 32 }), 48.312 * 1.8 + 32);
  await rejects(() => read("thermal", { zone: "gpu-thermal" }), /No thermal zone of type "gpu-thermal"/);
  await rejects(() => read("hwmon", { chip: "nope", input: "temp1_input" }), /No hwmon chip named "nope"/);
  await rejects(() => read("w1", { id: "28-ffffffffffff" }), /does not exist/);
  await rejects(() => read("command", { command: ["/bin/sh", "-c", "echo warm"] }), /does not hold a number/);
});

Deno.test("discovery lists what the fake board has, with pasteable tables", async () => {
  const found = await discoverSensors(RPI4);
  const names = found.map((s) => s.name);
  for (
    const n of [
      "soc",
      "cpu_thermal_temp1",
      "undervoltage",
      "pwmfan_fan1",
      "bme280_humidityrelative",
      "bme280_voltage0",
      "ds18b20_000005e2fdc3",
      "ds18b20_0316a2795aff",
      "undervoltage_firmware",
      "throttled",
      "load",
      "memory",
      "disk_root",
    ]
  ) assert.ok(names.includes(n), `${n} in ${names.join(", ")}`);
  const soc = found.find((s) => s.name === "soc")!;
  assert.equal(sensorTableToml(soc), '[sensors.soc]\ntype = "thermal"\nzone = "cpu-thermal"\n');
  for (const s of found) {
    const v = await new SensorSource(s.config, RPI4).read();
    assert.ok(Number.isFinite(v), `${s.name} reads`);
  }
  assert.deepEqual((await discoverSensors(FIX + "nothing-here")).map((s) => s.name), ["disk_root"]);
});
