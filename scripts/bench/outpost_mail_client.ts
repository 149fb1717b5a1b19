/**
 * Sends one message COUNT times, one SMTP connection each (as the delivery worker does), with outpost's SMTP
 * client library and the `[smtp]` settings of CONFIG; prints `DONE <milliseconds>` for the loop alone.
 *
 * Usage: deno run --allow-all scripts/bench/outpost_mail_client.ts CONFIG COUNT MESSAGE_FILE RECIPIENT
 *
 * @module
 */

import { loadMailConfig } from "../../src/app/outpost_config.ts";
import { deliver } from "../../src/smtp/smtp_client.ts";

const [config, countText, messageFile, rcpt] = Deno.args;
const count = Number(countText);
if (!config || !Number.isInteger(count) || count < 1 || !messageFile || !rcpt) {
  console.error("Usage: outpost_mail_client.ts CONFIG COUNT MESSAGE_FILE RECIPIENT");
  Deno.exit(64);
}
const mail = await loadMailConfig(config);
if (!mail.smtp) throw new Error(`Mail benchmark not run: ${config} has no [smtp] table.`);
const bytes = await Deno.readFile(messageFile);
const t0 = performance.now();
for (let i = 0; i < count; i++) {
  const r = await deliver(mail.smtp, { from: mail.smtp.from, to: [rcpt] }, {
    size: bytes.length,
    eightBit: false,
    smtputf8: false,
    write: (w) => w.write(bytes),
  });
  if (r.refused.length > 0) throw new Error(`Mail ${i} refused: ${r.refused[0].error.message}`);
}
console.log(`DONE ${(performance.now() - t0).toFixed(1)}`);
