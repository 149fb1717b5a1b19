/**
 * The daemon run the way the board runs it: the generated unit's own command lines (`ExecStartPre=+` as root,
 * `ExecStart=` as the `outpost` user), under exactly the Deno flags the prepare step derived, never `-A`.
 */

import assert from "node:assert/strict";
import { FieldDaemon, layOutBoard } from "./helpers/field_daemon.ts";
import { SKIP_FIELD } from "./helpers/field_user.ts";
import { freePort } from "./helpers/test_util.ts";

Deno.test({
  name: "device field: the generated unit starts (prepare as root, serve as outpost) and says READY=1",
  ignore: SKIP_FIELD,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-" });
    const port = freePort();
    const board = await layOutBoard(
      dir,
      `[device]
name = "pi-field"
state_dir = "{{dir}}/var/lib/outpost"

[ftp]
host = "127.0.0.1"
port = ${port}
active = false
[ftp.passive]
ports = "${port + 1}-${port + 2}"
`,
    );
    const d = await FieldDaemon.start(board);
    try {
      const failed = d.failedPre;
      assert.equal(failed, null, `ExecStartPre failed: ${failed?.stderr}${failed?.stdout}`);
      await d.waitReady();
      assert.doesNotMatch(d.output, /NotCapable|PermissionDenied/);
      assert.equal(d.main?.argv.includes("-A") || d.main?.argv.includes("--allow-all"), false);
      const flags = await Deno.readTextFile(`${board.runtimeDir}/deno-flags.env`);
      assert.match(flags, /^OUTPOST_DENO_FLAGS=--allow-read=/);
    } finally {
      await d.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
