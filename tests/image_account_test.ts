/**
 * The image's `outpost` account (scripts/image_account.ts): the id is the highest system id free as a uid, a gid
 * and a fixed sysusers.d id; existing users and groups are kept; the five files agree.
 */

import assert from "node:assert/strict";
import { type AccountFiles, planAccount, sysusersFixedIds } from "../scripts/image_account.ts";

const SPEC = {
  name: "outpost",
  home: "/var/lib/outpost",
  shell: "/usr/sbin/nologin",
  gecos: "outpost daemon",
  today: 20000,
};

function files(over: Partial<AccountFiles> = {}): AccountFiles {
  return {
    passwd: "root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998::/:/usr/sbin/nologin\n",
    group: "root:x:0:\nshadow:x:42:\nsystemd-journal:x:999:\nsystemd-network:x:998:\n",
    shadow: "root:*:20000:0:99999:7:::\n",
    gshadow: "root:*::\n",
    loginDefs: null,
    sysusers: [],
    ...over,
  };
}

Deno.test("image account: the highest id free as uid, gid and sysusers.d id; lines in all five files", () => {
  const plan = planAccount(files({ sysusers: ['u other 997 "x" /\ng grp 996\n'] }), SPEC);
  assert.deepEqual([plan.uid, plan.gid, plan.existed], [995, 995, false]);
  assert.match(plan.passwd, /\noutpost:x:995:995:outpost daemon:\/var\/lib\/outpost:\/usr\/sbin\/nologin\n$/);
  assert.match(plan.group, /\noutpost:x:995:\n$/);
  assert.match(plan.shadow, /\noutpost:!:20000::::::\n$/);
  assert.match(plan.gshadow, /\noutpost:!::\n$/);
  assert.match(
    plan.sysusersConf,
    /^u outpost 995 "outpost daemon" \/var\/lib\/outpost \/usr\/sbin\/nologin$/m,
  );
  assert.ok(plan.passwd.startsWith("root:x:0:0:"), "the base image's lines stay first and unchanged");
});

Deno.test("image account: an existing user keeps its ids and nothing is added twice", () => {
  const base = files();
  const first = planAccount(base, SPEC);
  const again = planAccount({ ...base, ...first, sysusers: [] }, SPEC);
  assert.equal(again.existed, true);
  assert.deepEqual([again.uid, again.gid], [first.uid, first.gid]);
  for (const k of ["passwd", "group", "shadow", "gshadow"] as const) assert.equal(again[k], first[k], k);
});

Deno.test("image account: an existing outpost group is reused; login.defs limits the range; a full range is an error", () => {
  const withGroup = planAccount(files({ group: "root:x:0:\noutpost:x:450:\n" }), SPEC);
  assert.deepEqual([withGroup.uid, withGroup.gid], [450, 450]);
  assert.equal(withGroup.group.match(/^outpost:/gm)?.length, 1);

  const narrow = planAccount(files({ loginDefs: "SYS_UID_MIN 100\nSYS_UID_MAX 499\n" }), SPEC);
  assert.equal(narrow.uid, 499);

  const full = files({ loginDefs: "SYS_UID_MIN 998\nSYS_UID_MAX 999\n" });
  assert.throws(() => planAccount(full, SPEC), /No free system id between 998 and 999/);

  // A file without a trailing newline still gets its own line.
  const plain = planAccount(
    files({ passwd: "root:x:0:0:root:/root:/bin/bash", shadow: null, gshadow: null }),
    SPEC,
  );
  assert.match(plain.passwd, /bash\noutpost:x:/);
  assert.match(plain.shadow, /^outpost:!:/);
});

Deno.test("image account: fixed ids in sysusers.d lines", () => {
  assert.deepEqual(sysusersFixedIds(['u a 100\nu b 200:300 "x"\ng c 400\nu d - "dyn"\n# u e 500\n']), [
    100,
    200,
    300,
    400,
  ]);
});
