/**
 * `outpost outbox`: list, retry, purge or flush the durable outbox.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError } from "../config/section.ts";
import { DeliveryWorker } from "../smtp/delivery_worker.ts";
import { isOutboxId, Outbox } from "../smtp/outbox.ts";
import { findConfigPath, loadMailConfig, parseConfig } from "../app/outpost_config.ts";
import { EX } from "./sendmail_command.ts";

const HELP = `Usage: outpost outbox <list|retry|purge|flush> [ID] [options]

  list            queued and failed messages: id, state, size, age, next attempt, recipients, subject
  retry [ID]      make a queued message due now, or put a failed one back in the queue (all without ID)
  purge ID|--all  delete a message, or with --all every queued and failed message
  flush           attempt every due message now from this process (use when the daemon is not running;
                  do not run it while the daemon runs: two senders may send a message twice)

Options:
  --json              list as JSON lines
  -C, --config FILE   outpost.toml to use
  -h, --help          this help`;

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

/**
 * Runs `outpost outbox`.
 *
 * @example
 * ```ts
 * const status = await outboxCommand(["list"]);
 * console.log(status); // the exit code
 * ```
 */
export async function outboxCommand(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: {
        json: { type: "boolean" },
        all: { type: "boolean" },
        config: { type: "string", short: "C" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
    }));
  } catch (e) {
    console.error(`outpost outbox: ${(e as Error).message}. Run "outpost outbox --help".`);
    return EX.USAGE;
  }
  if (values.help) {
    console.log(HELP);
    return EX.OK;
  }
  const [action, id, ...extra] = positionals;
  if (!["list", "retry", "purge", "flush"].includes(action ?? "") || extra.length > 0) {
    console.error(
      'outpost outbox: expected list, retry [ID], purge [ID] or flush. Run "outpost outbox --help".',
    );
    return EX.USAGE;
  }
  if (action === "purge" && id === undefined && !values.all) {
    console.error(
      "outpost outbox purge: give a message id, or --all to delete every queued and failed message " +
        '(see "outpost outbox list").',
    );
    return EX.USAGE;
  }
  let mail;
  try {
    mail = await loadMailConfig(values.config).catch(async (e) => {
      // No config file at all: a quick-start daemon's state in this folder, if there is one.
      const qs = `${Deno.cwd()}/.outpost-state`;
      if (!(e instanceof ConfigError) || values.config || (await findConfigPath()) !== null) throw e;
      if (!(await Deno.stat(`${qs}/outbox`).then(() => true, () => false))) throw e;
      console.error(`outpost outbox: no config file: using the quick-start state in ${qs}`);
      const cfg = parseConfig(`[device]\nstate_dir = ${JSON.stringify(qs)}\n`);
      return { device: cfg.device, smtp: cfg.smtp, outbox: cfg.outbox };
    });
  } catch (e) {
    console.error(`outpost outbox: ${e instanceof ConfigError ? e.message : (e as Error).message}`);
    return EX.CONFIG;
  }
  let outbox: Outbox;
  try {
    outbox = await Outbox.open(mail.outbox);
  } catch (e) {
    console.error(`outpost outbox: cannot open ${mail.outbox.dir}: ${(e as Error).message}`);
    return EX.IOERR;
  }
  try {
    // Take in what local users submitted, so list/retry/purge see it (the daemon does the same continuously).
    await outbox.pickup();
    if (action === "list") {
      const now = Date.now();
      const entries = await outbox.list();
      if (entries.length === 0 && !values.json) {
        console.log(`The outbox is empty (${mail.outbox.dir}).`);
        return EX.OK;
      }
      const rows: string[][] = [["ID", "STATE", "SIZE", "AGE", "ATTEMPTS", "NEXT", "TO", "SUBJECT"]];
      const notes: string[][] = [[]];
      for (const e of entries) {
        if (values.json) {
          console.log(JSON.stringify({
            id: e.id,
            state: e.state,
            size: e.size,
            created: new Date(e.meta.created).toISOString(),
            notBefore: e.notBefore.toISOString(),
            inDoubt: e.inDoubt,
            from: e.meta.from,
            to: e.meta.to,
            subject: e.meta.subject,
            messageId: e.meta.messageId,
            critical: e.meta.critical,
            tag: e.meta.tag,
            reason: e.reason,
            attempts: e.attempts,
            lastError: e.lastError,
          }));
          continue;
        }
        const next = e.state === "queued"
          ? (e.notBefore.getTime() <= now ? "due" : `in ${age(e.notBefore.getTime() - now)}`)
          : "gave up";
        rows.push([
          e.id,
          e.state,
          `${e.size} B`,
          age(now - e.meta.created),
          String(e.attempts),
          next + (e.meta.critical ? ", critical" : "") + (e.inDoubt ? ", possibly sent already" : ""),
          e.meta.to.join(","),
          JSON.stringify(e.meta.subject ?? ""),
        ]);
        const why = e.state === "failed" ? (e.reason ?? "").trim() : e.lastError;
        notes.push(why ? [`${e.state === "failed" ? "reason" : "last error"}: ${why}`] : []);
      }
      if (values.json) return EX.OK;
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      rows.forEach((r, i) => {
        console.log(r.map((c, j) => j === r.length - 1 ? c : c.padEnd(widths[j])).join("  "));
        for (const n of notes[i]) console.log(`    ${n}`);
      });
      const queued = entries.filter((e) => e.state === "queued").length;
      console.log(`${queued} queued, ${entries.length - queued} failed.`);
      return EX.OK;
    }
    if ((action === "retry" || action === "purge") && id !== undefined) {
      if (!isOutboxId(id) || !(await outbox.list()).some((e) => e.id === id)) {
        console.error(
          `outpost outbox ${action}: no message ${id} in ${mail.outbox.dir}; \`outpost outbox list\` shows the ids.`,
        );
        return EX.USAGE;
      }
    }
    if (action === "retry") {
      const n = await outbox.retry(id);
      console.log(`${n} message(s) due now.`);
      return EX.OK;
    }
    if (action === "purge") {
      const n = await outbox.purge(id);
      console.log(`${n} message(s) deleted.`);
      return EX.OK;
    }
    if (!mail.smtp) {
      console.error("outpost outbox: the config has no [smtp] table, so mail cannot be sent.");
      return EX.CONFIG;
    }
    const worker = new DeliveryWorker(outbox, mail.smtp);
    await worker.runOnce();
    const s = worker.status();
    console.log(`${s.pending} message(s) still queued.${s.lastError ? ` Last error: ${s.lastError}` : ""}`);
    return s.failing ? EX.TEMPFAIL : EX.OK;
  } catch (e) {
    console.error(`outpost outbox: ${(e as Error).message}`);
    return EX.IOERR;
  }
}
