// Delivery log lines name recipients and subject (issue 13, item 3).
import assert from "node:assert/strict";
import { startScriptServer } from "./helpers/smtp_script_server.ts";
import { clientOptions } from "./helpers/smtp_test_util.ts";
import { Outbox } from "../src/smtp/outbox.ts";
import { DeliveryWorker } from "../src/smtp/delivery_worker.ts";
import { setLogSink } from "../src/log/logger.ts";

Deno.test("mail: delivered, retry and failed lines name the recipients and the subject", async () => {
  const dir = await Deno.makeTempDir();
  let refuse = "451 4.3.0 try later";
  const srv = startScriptServer({ afterData: () => refuse });
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  try {
    const outbox = await Outbox.open({
      dir,
      maxAgeMs: 3_600_000,
      maxBytes: 1 << 20,
      maxMessageBytes: 1 << 20,
      retryMinMs: 0,
      retryMaxMs: 0,
      defaults: { from: "board@example.com", domain: "test-board" },
    });
    await outbox.enqueue({ to: ["a@example.com", "b@example.com"], subject: "freezer warm", text: "hi" });
    const worker = new DeliveryWorker(outbox, clientOptions(srv.port));
    await worker.runOnce();
    refuse = "250 2.0.0 ok";
    await worker.runOnce();
    refuse = "554 5.7.1 no";
    await outbox.enqueue({ to: ["c@example.com"], subject: "second", text: "hi" });
    await worker.runOnce();
  } finally {
    setLogSink(restore);
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
  const mail = lines.filter((l) => /^(warn: |error: )?mail (retry|delivered|failed) /.test(l));
  assert.equal(mail.length, 3, mail.join("\n"));
  assert.match(mail[0], /^warn: mail retry .*to=a@example.com,b@example.com subject="freezer warm"/);
  assert.match(mail[1], /^mail delivered .*to=a@example.com,b@example.com subject="freezer warm"/);
  assert.match(mail[2], /^error: mail failed .*to=c@example.com subject=second/);
});
