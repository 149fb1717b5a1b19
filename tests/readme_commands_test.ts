/**
 * The README matches the program (issue 13, item 5): every `outpost <command>` it shows exists and takes the
 * options shown (checked against the command's own --help), and every TOML block without placeholders is a
 * config the program accepts.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { ConfigError } from "../src/config/section.ts";
import { freePort } from "./helpers/test_util.ts";

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

/** The README's ```sh blocks, line by line (comments stripped), with the lines a test machine cannot run. */
function shellLines(): { line: string; runnable: boolean }[] {
  const out: { line: string; runnable: boolean }[] = [];
  for (const m of README.matchAll(/```sh\n([^]*?)```/g)) {
    for (const raw of m[1].replace(/\\\n\s*/g, " ").split("\n")) {
      const line = raw.replace(/\s+#.*$/, "").trim();
      if (!line || line.startsWith("#")) continue;
      // Root, a board, a download or the whole suite again: shown for people, exercised by their own tests
      // (image, install, boot and field tests), not re-run here.
      const runnable = !/^(sudo |git clone|scripts\/build-image\.sh|npx --yes deno@[\d.]+ task test)/.test(
        line,
      );
      out.push({ line, runnable });
    }
  }
  return out;
}

Deno.test("README: the command lines that can run here do what the README says", async () => {
  const runnable = shellLines().filter((l) => l.runnable).map((l) => l.line);
  assert.deepEqual(runnable, ["npx --yes deno@2.9.6 task start", "scripts/link-sendmail.sh"]);
  // The quick start (as the task runs it, on a free port and a scratch folder): it prints a login that works.
  const dir = await Deno.makeTempDir({ prefix: "outpost-readme-" });
  const task = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url))).tasks
    .start as string;
  assert.match(task, /serve --quick-start$/);
  const port = String(freePort());
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "serve", "--quick-start", "--port", port],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    for (let i = 0; i < 200 && !/curl ftp:\/\/\S+@127\.0\.0\.1:\d+\//.test(out); i++) {
      const r = await Promise.race([
        reader.read(),
        new Promise<null>((res) => setTimeout(() => res(null), 100)),
      ]);
      if (r && !r.done) out += r.value;
    }
    const url = /curl (ftp:\/\/\S+@127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
    assert.ok(url, `the quick start prints a curl line:\n${out}`);
    await Deno.writeTextFile(`${dir}/outpost-data/hello.txt`, "hi\n");
    const got = await new Deno.Command("curl", { args: ["-sS", "--max-time", "20", `${url}hello.txt`] })
      .output();
    assert.equal(new TextDecoder().decode(got.stdout), "hi\n", new TextDecoder().decode(got.stderr));
    reader.releaseLock();
  } finally {
    child.kill("SIGINT");
    const status = await child.status;
    assert.equal(status.code, 0, "Ctrl-C stops it cleanly");
    await child.stdout.cancel().catch(() => {});
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
  // The sendmail link script without --do only shows what it would do.
  const dry = await new Deno.Command("sh", {
    args: [new URL("../scripts/link-sendmail.sh", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(dry.code, 0);
  assert.match(new TextDecoder().decode(dry.stdout), /^Would write /m);
});
