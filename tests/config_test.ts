import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { ConfigError, parseDuration, parseSize } from "../src/config/section.ts";
import { hashPassword, verifyPassword } from "../src/config/password.ts";

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, "/boot/firmware/outpost.toml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

Deno.test("config: an empty file is valid and takes the defaults", () => {
  const cfg = parseConfig("", "/etc/outpost/outpost.toml");
  assert.equal(cfg.device.board, "generic");
  assert.equal(cfg.device.stateDir, "/var/lib/outpost");
  assert.ok(cfg.ftp);
  assert.equal(cfg.ftp.port, 2121);
});

Deno.test("config: relative paths are resolved against the config file's folder", () => {
  const cfg = parseConfig(
    '[device]\nname = "pi-freezer"\nstate_dir = "state"\n',
    "/boot/firmware/outpost.toml",
  );
  assert.equal(cfg.device.name, "pi-freezer");
  assert.equal(cfg.device.stateDir, "/boot/firmware/state");
});

Deno.test("config: every problem names its key", () => {
  const problems = problemsOf(`
[device]
name = "bad name!"
[ftp]
port = 70000
prot = 21
[ftp.limits]
idle_timeout = "soon"
`);
  assert.ok(problems.some((p) => p.startsWith("device.name:")), problems.join("\n"));
  assert.ok(problems.some((p) => p.startsWith("ftp.port: must be at most 65535")), problems.join("\n"));
  assert.ok(
    problems.some((p) => p.startsWith("ftp.prot: unknown key") && p.includes('"port"')),
    problems.join("\n"),
  );
  assert.ok(
    problems.some((p) => p.startsWith("ftp.limits.idle_timeout: must be a duration")),
    problems.join("\n"),
  );
});

Deno.test("config: a plain password is refused, a hash is accepted", async () => {
  const plain = problemsOf('[[ftp.users]]\nname = "alice"\npassword_hash = "secret"\nroot = "/srv/ftp"\n');
  assert.ok(plain.some((p) => p.startsWith("ftp.users[0].password_hash:")), plain.join("\n"));
  const hash = await hashPassword("secret", 1000);
  const cfg = parseConfig(`[[ftp.users]]\nname = "alice"\npassword_hash = "${hash}"\nroot = "/srv/ftp"\n`);
  assert.ok(cfg.ftp);
  assert.equal(await verifyPassword("secret", hash), true);
  assert.equal(await verifyPassword("Secret", hash), false);
});

Deno.test("config: a TOML syntax error gives its line", () => {
  const problems = problemsOf('[device]\nname = "x"\nport = = 3\n');
  assert.equal(problems.length, 1);
  assert.match(problems[0], /^line 3/);
});

Deno.test("config: durations and sizes", () => {
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration(2), 2000);
  assert.equal(parseDuration("soon"), null);
  assert.equal(parseSize("64MiB"), 64 * 1024 * 1024);
  assert.equal(parseSize("10MB"), 10_000_000);
  assert.equal(parseSize("ten"), null);
});

Deno.test("config: the FTPS certificate folder defaults to <state_dir>/tls", () => {
  const cfg = parseConfig(
    '[device]\nstate_dir = "/data/state"\n[ftp.tls]\nmode = "optional"\n',
    "/etc/outpost.toml",
  );
  assert.equal(cfg.ftp?.tls?.certDir, "/data/state/tls");
  const own = parseConfig(
    '[ftp.tls]\nmode = "optional"\ncert_dir = "/etc/outpost/tls"\n',
    "/etc/outpost.toml",
  );
  assert.equal(own.ftp?.tls?.certDir, "/etc/outpost/tls");
});

Deno.test("config: uploads are synced to the medium unless sync_uploads = false", () => {
  assert.equal(parseConfig("", "/etc/outpost.toml").ftp?.syncUploads, true);
  assert.equal(parseConfig("[ftp]\nsync_uploads = false\n", "/etc/outpost.toml").ftp?.syncUploads, false);
});

Deno.test("config: a path with a space or comma is refused up front, naming the key (the board's sandbox cannot carry it)", () => {
  assert.throws(
    () => parseConfig('[device]\nstate_dir = "/var/lib/my outpost"\n', "/boot/outpost.toml"),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.problems.some((p) => /^device\.state_dir: must not contain spaces or commas/.test(p)),
  );
  assert.throws(
    () =>
      parseConfig(
        '[[ftp.users]]\nname = "a"\npassword_hash = "x"\nroot = "/srv/a,b"\n',
        "/boot/outpost.toml",
      ),
    (e: unknown) =>
      e instanceof ConfigError && e.problems.some((p) => /ftp\.users\[0\]\.root: must not contain/.test(p)),
  );
});

Deno.test("config: [smtp] from with a display name gives the From name and the bare envelope address", () => {
  const base = '[device]\nname = "pi-freezer"\n[smtp]\nhost = "smtp.example.com"\n';
  const named = parseConfig(`${base}from = "Freezer Pi <you@example.com>"\n`, "/boot/outpost.toml");
  assert.equal(named.smtp?.from, "you@example.com");
  assert.equal(named.smtp?.fromName, "Freezer Pi");
  const both = parseConfig(
    `${base}from = "Freezer Pi <you@example.com>"\nfrom_name = "Lab"\n`,
    "/boot/outpost.toml",
  );
  assert.equal(both.smtp?.fromName, "Lab", "from_name wins");
  const bare = parseConfig(`${base}from = "you@example.com"\n`, "/boot/outpost.toml");
  assert.equal(bare.smtp?.fromName, "pi-freezer", "the device name by default");
});
