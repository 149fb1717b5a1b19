/**
 * What mail needs from the system, from the parsed `[smtp]` and `[outbox]` tables: the relay's `host:port`, the CA
 * file, the password's environment variable or command (a command string runs through `/bin/sh`), the outbox
 * folder the daemon owns, and the maildrop local users submit through (inside the outbox folder by default; see
 * {@link mailPaths} for exactly who touches what).
 *
 * @module
 */

import { type SandboxNeeds, SandboxNeedsBuilder } from "../config/sandbox_needs.ts";
import type { OutboxOptions } from "./outbox.ts";
import type { SmtpClientOptions } from "./smtp_client.ts";
import { mailPaths } from "./smtp_config.ts";

/**
 * The mail part's needs: `smtp` is null when `[smtp]` is absent (mail then waits in the outbox).
 *
 * @example
 * ```ts
 * import type { OutpostConfig } from "../app/outpost_config.ts";
 *
 * declare const config: OutpostConfig; // as loadConfig() returns it
 * const needs = mailSandboxNeeds(config.smtp, config.outbox);
 * console.log(needs.net); // ["smtp.example.com:465"]
 * ```
 */
export function mailSandboxNeeds(smtp: SmtpClientOptions | null, outbox: OutboxOptions): SandboxNeeds {
  const b = new SandboxNeedsBuilder();
  const paths = mailPaths(outbox);
  for (const p of paths.daemonReadWrite) b.readWrite(p, { own: true });
  if (smtp) {
    b.connect(smtp.host, smtp.port);
    if (smtp.caFile) b.read(smtp.caFile);
    if (smtp.passwordEnv) b.env(smtp.passwordEnv);
    // argv[0]: "/bin/sh" for a command string, the program itself for a list.
    if (smtp.passwordCommand?.length) b.run(smtp.passwordCommand[0]);
  }
  return b.build();
}
