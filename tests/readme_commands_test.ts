/**
 * The README matches the program (issue 13, item 5): every `outpost <command>` it shows exists and takes the
 * options shown (checked against the command's own --help), and every TOML block without placeholders is a
 * config the program accepts.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { ConfigError } from "../src/config/section.ts";

const README = await Deno.readTextFile(new URL("../README.md", import.meta.url));
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const helpCache = new Map<string, Promise<{ code: number; text: string }>>();

function help(cmd: string): Promise<{ code: number; text: string }> {
  let p = helpCache.get(cmd);
  if (!p) {
    p = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, cmd, "--help"],
      stdin: "null",
      env: { NO_COLOR: "1", OUTPOST_LOG: "off" },
    }).output().then((o) => ({
      code: o.code,
      text: new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr),
    }));
    helpCache.set(cmd, p);
  }
  return p;
}

/** `outpost <cmd> <rest>` uses in the README: the command block's lines and inline code spans. */
function uses(): { cmd: string; rest: string; where: string }[] {
  const out: { cmd: string; rest: string; where: string }[] = [];
  const block = /## The command\n\n```\n([^]*?)```/.exec(README)?.[1] ?? "";
  for (const line of block.split("\n")) {
    const m = /^outpost ([a-z-]+)(.*)$/.exec(line);
    if (m) out.push({ cmd: m[1], rest: m[2], where: `command list: ${line.trim()}` });
  }
  for (const m of README.matchAll(/`outpost ([a-z-]+)([^`]*)`/g)) {
    out.push({ cmd: m[1], rest: m[2], where: m[0] });
  }
  return out;
}

Deno.test("README: every outpost command shown exists, and its options are in its --help", async () => {
  const problems: string[] = [];
  for (const u of uses()) {
    if (u.cmd === "command") continue; // "`outpost <command> --help`"
    const h = await help(u.cmd);
    if (h.code !== 0) {
      problems.push(`${u.where}: \`outpost ${u.cmd} --help\` exits ${h.code}`);
      continue;
    }
    // Options before the description columns (two spaces) or inside parentheses.
    for (const flag of u.rest.match(/(?<![\w-])--?[a-zA-Z][\w-]*/g) ?? []) {
      if (flag === "--help") continue;
      if (!new RegExp(`(^|[\\s\\[(|,])${flag.replace(/[-]/g, "\\-")}(?![\\w-])`, "m").test(h.text)) {
        problems.push(`${u.where}: ${flag} is not in \`outpost ${u.cmd} --help\``);
      }
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("README: each complete TOML block is a config outpost accepts", () => {
  const problems: string[] = [];
  const blocks = [...README.matchAll(/```toml\n([^]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 5);
  let checked = 0;
  for (const text of blocks) {
    // Placeholders ("...", "…") are for the reader to fill in.
    if (/\.\.\.|…/.test(text.replace(/#.*$/gm, ""))) continue;
    checked++;
    try {
      parseConfig(text, "/boot/firmware/outpost.toml");
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(`${text.split("\n")[0]} …: ${e.problems.join("; ")}`);
    }
  }
  assert.ok(checked >= 3, `only ${checked} blocks checked`);
  assert.deepEqual(problems, []);
});

Deno.test("README: the apt packages it lists for the tests are exactly those .ci/run installs", async () => {
  const words = (text: string) =>
    new Set(text.replace(/\\\n/g, " ").split(/\s+/).filter((w) => w && !w.startsWith("-") && w !== "\\"));
  const readme = /```sh\nsudo apt-get install ([^`]*?)\n```/.exec(README)?.[1];
  assert.ok(readme, "the README's apt-get block");
  const ci = await Deno.readTextFile(new URL("../.ci/run", import.meta.url));
  const installed = /apt-get install -y -q --no-install-recommends \\\n([^]*?)\n\s*#/.exec(ci)?.[1];
  assert.ok(installed, ".ci/run's apt-get install line");
  assert.deepEqual([...words(readme)].sort(), [...words(installed)].sort());
});
