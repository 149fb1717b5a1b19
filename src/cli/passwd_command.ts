/**
 * `outpost passwd`: prints a password hash to paste into `outpost.toml`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hashPassword } from "../config/password.ts";
import { readStdin } from "./read_stdin.ts";

const HELP = `Usage: outpost passwd [--stdin]

Prints a PBKDF2-SHA256 hash of a password for a user's password_hash key in outpost.toml.
The password is asked for on the terminal (not echoed), or read from standard input with --stdin.`;

async function promptHidden(label: string): Promise<string> {
  await Deno.stderr.write(new TextEncoder().encode(label));
  Deno.stdin.setRaw(true);
  try {
    let out = "";
    const buf = new Uint8Array(1);
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null || buf[0] === 0x0d || buf[0] === 0x0a) break;
      if (buf[0] === 0x03) throw new Error("Password not read: interrupted.");
      if (buf[0] === 0x7f) out = out.slice(0, -1);
      else out += String.fromCharCode(buf[0]);
    }
    return new TextDecoder().decode(Uint8Array.from(out, (c) => c.charCodeAt(0)));
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(new TextEncoder().encode("\n"));
  }
}

/**
 * Runs `outpost passwd`.
 *
 * @example
 * ```ts
 * const status = await passwdCommand(["--stdin"]);
 * Deno.exit(status);
 * ```
 */
export async function passwdCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { stdin: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let password: string;
  if (values.stdin || !Deno.stdin.isTerminal()) {
    const raw = await readStdin(4096);
    if (raw === null) {
      console.error("outpost passwd: standard input is longer than 4096 bytes; nothing printed.");
      return 65;
    }
    password = new TextDecoder().decode(raw).replace(/\r?\n$/, "");
  } else {
    password = await promptHidden("Password: ");
    const again = await promptHidden("Again: ");
    if (again !== password) {
      console.error("outpost passwd: the two passwords differ; nothing printed.");
      return 65;
    }
  }
  if (password.length === 0) {
    console.error("outpost passwd: the password is empty; nothing printed.");
    return 65;
  }
  console.log(await hashPassword(password));
  return 0;
}
