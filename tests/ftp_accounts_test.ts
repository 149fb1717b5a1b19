import assert from "node:assert/strict";
import { checkPasswordHash, hashPassword, verifyPassword } from "../src/config/password.ts";
import { Accounts, dummyHash } from "../src/ftp/accounts.ts";
import { FULL_ACCESS, READ_ONLY } from "../src/ftp/ftp_file_system.ts";

const ITER = 1000; // keep the test fast; production hashes use DEFAULT_ITERATIONS

Deno.test("configured users log in with the right password only", async () => {
  const accounts = new Accounts({
    users: [{
      name: "alice",
      passwordHash: await hashPassword("s3cret", ITER),
      root: "/srv/a",
      perms: FULL_ACCESS,
    }],
    anonymous: null,
  });
  const u = await accounts.authenticate("alice", "s3cret");
  assert.equal(u?.name, "alice");
  assert.equal(u?.root, "/srv/a");
  assert.deepEqual(u?.perms, FULL_ACCESS);
  assert.equal(await accounts.authenticate("alice", "wrong"), null);
  assert.equal(await accounts.authenticate("alice", ""), null);
  assert.equal(await accounts.authenticate("Alice", "s3cret"), null);
  assert.equal(await accounts.authenticate("bob", "s3cret"), null);
  assert.equal(accounts.anonymousEnabled, false);
});

Deno.test("anonymous is refused when disabled", async () => {
  for (const anonymous of [null, { enabled: false, root: "/srv/pub" }]) {
    const accounts = new Accounts({ users: [], anonymous });
    assert.equal(await accounts.authenticate("anonymous", "x@y"), null);
    assert.equal(await accounts.authenticate("ftp", ""), null);
  }
});

Deno.test("anonymous and ftp (any case) get READ_ONLY at their own root when enabled", async () => {
  const accounts = new Accounts({
    users: [{
      name: "alice",
      passwordHash: await hashPassword("pw", ITER),
      root: "/srv/a",
      perms: FULL_ACCESS,
    }],
    anonymous: { enabled: true, root: "/srv/pub" },
  });
  for (const name of ["anonymous", "ANONYMOUS", "ftp", "Ftp"]) {
    const u = await accounts.authenticate(name, "guest@example.com");
    assert.equal(u?.passwordHash, null, name);
    assert.equal(u?.root, "/srv/pub");
    assert.deepEqual(u?.perms, READ_ONLY);
  }
  assert.equal(await accounts.authenticate("anon", "x"), null);
  assert.equal((await accounts.authenticate("alice", "pw"))?.root, "/srv/a");
});

Deno.test("unknown users are verified against a well-formed dummy hash", async () => {
  // verifyPassword returns early for malformed hashes; a well-formed dummy makes unknown names cost a full PBKDF2.
  assert.equal(checkPasswordHash(dummyHash(200_000)), null);
  assert.equal(checkPasswordHash(dummyHash(1000)), null);
  assert.equal(await verifyPassword("", dummyHash(1000)), false);
  const accounts = new Accounts({
    users: [{ name: "alice", passwordHash: await hashPassword("pw", ITER), root: "/r", perms: READ_ONLY }],
    anonymous: null,
  });
  assert.equal(await accounts.authenticate("nobody", "pw"), null);
  assert.equal(await accounts.authenticate("alice", "nope"), null);
});
