/**
 * A delivery worker in its own process, for the kill -9 tests: `deno run -A smtp_worker_child.ts OUTBOX_DIR PORT`
 * delivers the outbox to 127.0.0.1:PORT and exits when it is empty (bounded number of rounds).
 *
 * @module
 */

import { Outbox } from "../../src/smtp/outbox.ts";
import { DeliveryWorker } from "../../src/smtp/delivery_worker.ts";
import { setLogSink } from "../../src/log/logger.ts";
import { clientOptions } from "./smtp_test_util.ts";

setLogSink(() => {});
const [dir, port] = Deno.args;
const outbox = await Outbox.open({
  dir,
  maxAgeMs: 3_600_000,
  maxBytes: 1 << 30,
  maxMessageBytes: 1 << 30,
  retryMinMs: 100,
  retryMaxMs: 200,
});
const worker = new DeliveryWorker(
  outbox,
  clientOptions(Number(port), { replyTimeoutMs: 60_000, dataTimeoutMs: 60_000 }),
);
console.log("started");
const deadline = Date.now() + 90_000;
for (let i = 0; i < 300 && Date.now() < deadline; i++) {
  await worker.runOnce();
  if (await outbox.pendingCount() === 0) break;
  await new Promise((r) => setTimeout(r, 100));
}
console.log("done");
