/**
 * `outpost ftp`: runs an FTP server on one folder without a config file, for quick use.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { checkPasswordHash } from "../config/password.ts";
import { resolvePath } from "../config/section.ts";
import { Accounts } from "../ftp/accounts.ts";
import { FULL_ACCESS, READ_ONLY } from "../ftp/ftp_file_system.ts";
import { defaultFtpServerOptions, FtpServer } from "../ftp/ftp_server.ts";
import { parsePortRange } from "../ftp/address.ts";

const HELP = `Usage: outpost ftp --root DIR [--port N] [--host H]
                   (--user NAME --password-hash HASH [--read-only] | --anonymous)
                   [--passive-ports MIN-MAX] [--passive-address IPV4] [--no-active]

Serves DIR over FTP until interrupted (Ctrl-C or SIGTERM closes it cleanly).

  --root DIR              folder to serve (required)
  --port N                port to listen on (default 2121; 0 = any free port)
  --host H                address to listen on (default 0.0.0.0; "::" for IPv4 and IPv6)
  --user NAME             log-in name (full access unless --read-only)
  --password-hash HASH    the user's password hash, from "outpost passwd"
  --read-only             give --user list and read access only
  --anonymous             allow anonymous read-only log-ins ("anonymous" or "ftp", any password)
  --passive-ports R       passive port range, e.g. 50000-50100 (default: any free port)
  --passive-address IP    IPv4 address to advertise for PASV (behind NAT)
  --no-active             refuse PORT/EPRT (active mode)`;

/**
 * Runs `outpost ftp`.
 *
 * @example
 * ```ts
 * const status = await ftpCommand(["--root", "/srv/ftp", "--port", "2121", "--anonymous"]);
 * Deno.exit(status);
 * ```
 */
export async function ftpCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        root: { type: "string" },
        port: { type: "string", default: "2121" },
        host: { type: "string", default: "0.0.0.0" },
        user: { type: "string" },
        "password-hash": { type: "string" },
        "read-only": { type: "boolean" },
        anonymous: { type: "boolean" },
        "passive-ports": { type: "string" },
        "passive-address": { type: "string" },
        "no-active": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`outpost ftp: ${(e as Error).message}\n\n${HELP}`);
    return 64;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const fail = (msg: string): number => {
    console.error(`outpost ftp: ${msg}`);
    return 64;
  };
  if (!values.root) return fail("--root is required (the folder to serve).");
  const root = resolvePath(Deno.cwd(), values.root);
  try {
    if (!(await Deno.stat(root)).isDirectory) return fail(`--root ${root} is not a folder.`);
  } catch {
    return fail(`--root ${root} does not exist.`);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return fail(`--port must be 0..65535, got ${values.port}.`);
  }
  if (!values.user && !values.anonymous) {
    return fail("give --user NAME --password-hash HASH, or --anonymous.");
  }
  const users = [];
  if (values.user) {
    const hash = values["password-hash"];
    if (!hash) return fail("--user needs --password-hash (make one with: outpost passwd).");
    const why = checkPasswordHash(hash);
    if (why) return fail(`--password-hash ${why}.`);
    users.push({
      name: values.user,
      passwordHash: hash,
      root,
      perms: values["read-only"] ? READ_ONLY : FULL_ACCESS,
    });
  }
  const opts = defaultFtpServerOptions(
    new Accounts({ users, anonymous: values.anonymous ? { enabled: true, root } : null }),
  );
  opts.hostname = values.host;
  opts.port = port;
  opts.allowActive = !values["no-active"];
  if (values["passive-ports"]) {
    const r = parsePortRange(values["passive-ports"]);
    if (typeof r === "string") return fail(`--passive-ports ${r}.`);
    opts.passive = { ...opts.passive, portMin: r.min, portMax: r.max };
  }
  if (values["passive-address"]) opts.passive = { ...opts.passive, address: values["passive-address"] };

  const server = new FtpServer(opts);
  try {
    await server.listen();
  } catch (e) {
    return fail((e as Error).message);
  }
  const shown = values.host.includes(":") ? `[${values.host}]` : values.host;
  console.log(`outpost ftp: serving ${root} on ftp://${shown}:${server.port}/`);
  console.log(
    values.user
      ? `outpost ftp: log in as "${values.user}" with the password you hashed${
        values.anonymous ? ', or as "anonymous"' : ""
      }.`
      : 'outpost ftp: log in as "anonymous" with any password (read-only).',
  );
  const stopped = new Promise<void>((resolve) => {
    const stop = () => resolve();
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  await stopped;
  console.log("outpost ftp: shutting down.");
  await server.close({ graceMs: 2000 });
  return 0;
}
