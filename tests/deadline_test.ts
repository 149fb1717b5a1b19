/** The one timeout helper: it fires once, `using` clears it, and `killAfter` ends a hung child. */

import assert from "node:assert/strict";
import { deadline, killAfter } from "../src/util/deadline.ts";

Deno.test("deadline: runs its action once after the time, and says so", async () => {
  let runs = 0;
  const d = deadline(10, () => runs++);
  assert.equal(d.expired, false);
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(d.expired, true);
  assert.equal(runs, 1);
  d.clear();
});

Deno.test("deadline: cleared at the end of a `using` scope, nothing runs later", async () => {
  let runs = 0;
  {
    using d = deadline(10, () => runs++);
    assert.equal(d.expired, false);
  }
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(runs, 0);
});

Deno.test("deadline: an action that throws (the thing already ended) is not an error", async () => {
  const d = deadline(1, () => {
    throw new Error("already closed");
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(d.expired, true);
});

Deno.test("killAfter: a hung child is killed and the limit reports it", async () => {
  const child = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
  using limit = killAfter(child, 50);
  const status = await child.status;
  assert.equal(limit.expired, true);
  assert.equal(status.signal, "SIGKILL");
});
