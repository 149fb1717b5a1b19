/**
 * `outpost sensors`: lists the sensors this board actually has, with current readings and `[sensors.<name>]`
 * tables to paste into `outpost.toml`, plus the sensors the config already defines and what they read now.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { discoverSensors, sensorTableToml } from "../alerts/sensor_discovery.ts";
import { SensorSource } from "../alerts/sensor_source.ts";
import { formatNumber } from "../alerts/templates.ts";
import { loadBoardProfile, renderBoardConfig } from "../alerts/board_profiles.ts";
import type { SensorConfig } from "../alerts/alerts_config.ts";

const HELP = `Usage: outpost sensors [--config FILE] [--sysfs-root DIR] [--toml] [--json]
       outpost sensors --board-config BOARD

Lists the sensors this board has (thermal zones, hwmon chips, IIO devices, DS18B20 probes, Raspberry Pi
throttling flags, load, memory, disk) with their current readings, and the sensors your config defines.

  --config FILE       also read the [sensors.*] of this outpost.toml (default: $OUTPOST_CONFIG or the usual places)
  --sysfs-root DIR    read /sys and /proc below DIR instead of / (for testing)
  --toml              print a [sensors.<name>] table for every sensor found, ready to paste
  --json              machine-readable output
  --board-config ID   print the commented outpost.toml for a board profile (rpi3, rpi4, rpi5, rpi-zero2w, ...)`;

interface Row {
  name: string;
  kind: string;
  reading: string;
  detail: string;
}

async function readRow(
  cfg: SensorConfig,
  root: string,
  detail: string,
): Promise<Row & { value: number | null }> {
  const src = new SensorSource(cfg, root);
  try {
    const v = await src.read();
    const unit = cfg.unit ? ` ${cfg.unit}` : "";
    return {
      name: cfg.name,
      kind: cfg.type,
      reading: `${formatNumber(v, cfg.decimals)}${unit}`,
      detail,
      value: v,
    };
  } catch (e) {
    return { name: cfg.name, kind: cfg.type, reading: `error: ${(e as Error).message}`, detail, value: null };
  }
}

function table(rows: Row[]): string {
  const w = (k: keyof Row) => Math.max(4, ...rows.map((r) => r[k].length));
  const wn = w("name"), wk = w("kind"), wr = Math.min(w("reading"), 40);
  const line = (r: Row) =>
    `  ${r.name.padEnd(wn)}  ${r.kind.padEnd(wk)}  ${r.reading.padEnd(wr)}  ${r.detail}`;
  return [line({ name: "NAME", kind: "TYPE", reading: "READING", detail: "WHAT" }), ...rows.map(line)].join(
    "\n",
  );
}

/**
 * Runs `outpost sensors`.
 *
 * @example
 * ```ts
 * const status = await sensorsCommand(["--sysfs-root", "tests/fixtures/sysfs/rpi4"]);
 * ```
 */
export async function sensorsCommand(args: string[]): Promise<number> {
  let opts;
  try {
    opts = parseArgs({
      args,
      options: {
        config: { type: "string" },
        "sysfs-root": { type: "string" },
        "board-config": { type: "string" },
        toml: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
    }).values;
  } catch (e) {
    console.error(`outpost sensors: ${(e as Error).message}\n\n${HELP}`);
    return 64;
  }
  if (opts.help) {
    console.log(HELP);
    return 0;
  }
  if (opts["board-config"]) {
    try {
      console.log(renderBoardConfig(await loadBoardProfile(opts["board-config"])));
      return 0;
    } catch (e) {
      console.error(`outpost sensors: ${(e as Error).message}`);
      return 78;
    }
  }

  let configured: SensorConfig[] = [];
  let root = opts["sysfs-root"] ?? null;
  const explicitConfig = opts.config ?? Deno.env.get("OUTPOST_CONFIG");
  try {
    const { findConfigPath, loadConfig } = await import("../app/outpost_config.ts");
    const path = await findConfigPath(explicitConfig);
    if (path !== null) {
      const cfg = await loadConfig(path);
      configured = cfg.alerts.sensors;
      root ??= cfg.alerts.sysfsRoot;
    }
  } catch (e) {
    if (explicitConfig) {
      console.error(`outpost sensors: ${(e as Error).message}`);
      return 78;
    }
  }
  root ??= "/";

  const found = await discoverSensors(root);
  const foundRows = await Promise.all(found.map((s) => readRow(s.config, root, s.description)));
  const confRows = await Promise.all(configured.map((s) => readRow(s, root, "from the config")));

  if (opts.json) {
    console.log(JSON.stringify(
      {
        found: found.map((s, i) => ({ ...foundRows[i], description: s.description, table: s.table })),
        configured: confRows,
      },
      null,
      2,
    ));
    return 0;
  }
  if (opts.toml) {
    // Only TOML, so the output can be appended to outpost.toml as it is; the readings go into comments.
    console.log('# Paste what you need into outpost.toml, then add [[rules]] with sensor = "<name>".\n');
    for (let i = 0; i < found.length; i++) {
      const r = foundRows[i];
      console.log(`# ${found[i].description}: ${r.reading}`);
      console.log(sensorTableToml(found[i]));
    }
    return 0;
  }
  if (confRows.length > 0) {
    console.log("Sensors in your config (use these names in [[rules]] sensor = ...):");
    console.log(table(confRows));
    console.log("");
  }
  console.log(`Sensors found on this board${root !== "/" ? ` (under ${root})` : ""}:`);
  console.log(table(foundRows));
  console.log('\nRun "outpost sensors --toml" for [sensors.<name>] tables to paste into outpost.toml.');
  return 0;
}
