/**
 * The arm64 Deno cache under concurrent use: on a fresh CI machine the device tests (image, install, QEMU) all ask
 * for the runtime at once, in separate test processes. No caller may ever get a half-written binary.
 */
import assert from "node:assert/strict";
import { DENO_ARM64_VERSION, fetchDenoArm64 } from "../scripts/deno_arm64.ts";

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

Deno.test("deno arm64 cache: callers racing on a fresh cache all get the whole binary, never a partial one", async () => {
  // The tarball from the shared cache (fetched once with the registry; the race below needs no network).
  const shared = await fetchDenoArm64();
  const tarball = `${
    shared.slice(0, -"/package/deno".length)
  }/deno-linux-arm64-glibc-${DENO_ARM64_VERSION}.tgz`;
  const expected = await sha256(shared);
  const cache = await Deno.makeTempDir({ prefix: "outpost-arm64-race-" });
  try {
    const dir = `${cache}/deno-arm64-${DENO_ARM64_VERSION}`;
    await Deno.mkdir(dir);
    await Deno.copyFile(tarball, `${dir}/deno-linux-arm64-glibc-${DENO_ARM64_VERSION}.tgz`);
    // A second process (as another test file would be) unpacks; this one asks as soon as the binary's name appears.
    const other = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", new URL("../scripts/deno_arm64.ts", import.meta.url).pathname, cache],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // What the early caller was handed is hashed the moment it is handed over, as a user of it would run it.
    let early: Promise<string> | null = null;
    for (let i = 0; i < 2000 && !early; i++) {
      if (await exists(`${dir}/package/deno`)) early = fetchDenoArm64(cache).then(sha256);
      else await new Promise((r) => setTimeout(r, 5));
    }
    const out = await other.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.ok(early, "the other process never made the binary");
    assert.equal(await early, expected, "the early caller got a different (partial) binary");
    // Several callers at once in one process, on a cache without the binary.
    await Deno.remove(`${dir}/package`, { recursive: true });
    const all = await Promise.all([1, 2, 3].map(() => fetchDenoArm64(cache)));
    for (const p of all) assert.equal(await sha256(p), expected);
    // Nothing half-done is left in the cache folder.
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["deno-linux-arm64-glibc-2.9.6.tgz", "package"].sort());
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
