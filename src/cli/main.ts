/**
 * The `outpost` command: one binary, one subcommand per job.
 *
 * Each subcommand lives in its own `*_command.ts` module exporting `(args: string[]) => Promise<number>` (the exit
 * status); this file only dispatches.
 *
 * @module
 */

/** A subcommand: a one-line summary and a lazily loaded runner. */
interface Subcommand {
  summary: string;
  load: () => Promise<(args: string[]) => Promise<number>>;
}

/** The subcommands, in the order `outpost --help` lists them. */
const COMMANDS: Record<string, Subcommand> = {
  serve: {
    summary: "Run the daemon: FTP server, mail outbox and alert monitor from outpost.toml",
    load: async () => (await import("./serve_command.ts")).serveCommand,
  },
  status: {
    summary: "Ask the running daemon what it is doing (sessions, sensors, rules, outbox; --json)",
    load: async () => (await import("./status_command.ts")).statusCommand,
  },
  "check-config": {
    summary: "Validate a config file and print the resolved settings",
    load: async () => (await import("./check_config_command.ts")).checkConfigCommand,
  },
  ftp: {
    summary: "Serve one folder over FTP without a config file",
    load: async () => (await import("./ftp_command.ts")).ftpCommand,
  },
  passwd: {
    summary: "Print a password hash for the config file",
    load: async () => (await import("./passwd_command.ts")).passwdCommand,
  },
  cert: {
    summary: "Create the self-signed FTPS certificate and print its fingerprint",
    load: async () => (await import("./cert_command.ts")).certCommand,
  },
  sensors: {
    summary: "List this board's sensors with current readings and names for rules",
    load: async () => (await import("./sensors_command.ts")).sensorsCommand,
  },
  sendmail: {
    summary: "Queue a message from stdin for delivery (a /usr/sbin/sendmail drop-in)",
    load: async () => (await import("./sendmail_command.ts")).sendmailCommand,
  },
  send: {
    summary: "Send one mail (--now: deliver at once to test the mail settings)",
    load: async () => (await import("./send_command.ts")).sendCommand,
  },
  outbox: {
    summary: "List, retry, purge or flush the durable mail outbox",
    load: async () => (await import("./outbox_command.ts")).outboxCommand,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  const lines = Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`);
  return [
    "outpost: FTP server, SMTP client and alert monitor for small boards.",
    "",
    "Usage: outpost <command> [options]    (outpost <command> --help for its options)",
    "",
    "Commands:",
    ...lines,
  ].join("\n");
}

/**
 * Runs the CLI with `args` and resolves to the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await main(["passwd", "--help"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 64 : 0;
  }
  if (name === "--version") {
    console.log("outpost 0.1.0");
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`outpost: unknown command "${name}". Run "outpost --help" for the list.`);
    return 64;
  }
  return await (await cmd.load())(rest);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
