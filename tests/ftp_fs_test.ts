import type { FtpFile } from "../src/ftp/fd_file.ts";
import assert from "node:assert/strict";
import {
  FtpFileSystem,
  FtpFsError,
  FULL_ACCESS,
  parsePermissions,
  READ_ONLY,
  toFtpFsError,
} from "../src/ftp/ftp_file_system.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A temp dir with root/ (the jail) and outside/ (a secret next to it). */
async function setup(): Promise<
  { base: string; root: string; fs: FtpFileSystem; cleanup: () => Promise<void> }
> {
  const base = await Deno.makeTempDir({ prefix: "outpost_ftpfs_" });
  const root = `${base}/root`;
  await Deno.mkdir(`${root}/sub/deeper`, { recursive: true });
  await Deno.mkdir(`${base}/outside`);
  await Deno.writeTextFile(`${base}/outside/secret.txt`, "secret");
  await Deno.writeTextFile(`${root}/a.txt`, "hello");
  await Deno.writeTextFile(`${root}/sub/b.txt`, "bee");
  const fs = await FtpFileSystem.open(root);
  return { base, root, fs, cleanup: () => Deno.remove(base, { recursive: true }) };
}

async function assertFsError(p: Promise<unknown>, code: number, base: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FtpFsError, `expected FtpFsError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.ok(!e.message.includes(base), `message leaks host path: ${e.message}`);
    assert.ok(!e.message.includes("/"), `message mentions a path: ${e.message}`);
    return;
  }
  assert.fail("expected an FtpFsError");
}

async function readAll(file: FtpFile): Promise<string> {
  const buf = new Uint8Array(1024);
  let s = "";
  for (let i = 0; i < 1000; i++) {
    const n = await file.read(buf);
    if (n === null) break;
    s += dec.decode(buf.subarray(0, n));
  }
  file.close();
  return s;
}

Deno.test("parsePermissions and presets", () => {
  assert.deepEqual(parsePermissions(["list", "read"]), READ_ONLY);
  assert.deepEqual(parsePermissions(["all"]), FULL_ACCESS);
  assert.deepEqual(parsePermissions(["read-only", "write"]), { ...READ_ONLY, write: true });
  assert.equal(typeof parsePermissions(["list", "fly"]), "string");
  assert.match(parsePermissions(["fly"]) as string, /unknown permission "fly"/);
});

Deno.test("resolve is pure, normalises and never climbs above /", async () => {
  const { fs, cleanup } = await setup();
  try {
    assert.equal(fs.resolve("/", ""), "/");
    assert.equal(fs.resolve("/sub", ""), "/sub");
    assert.equal(fs.resolve("/sub", "b.txt"), "/sub/b.txt");
    assert.equal(fs.resolve("/sub", "../../.."), "/");
    assert.equal(fs.resolve("/sub", "../../etc/passwd"), "/etc/passwd");
    assert.equal(fs.resolve("/sub", "/etc/passwd"), "/etc/passwd");
    assert.equal(fs.resolve("/", "a//b/./c/"), "/a/b/c");
    assert.equal(fs.resolve("/", "%2e%2e/%2e%2e"), "/%2e%2e/%2e%2e");
    assert.equal(fs.resolve("/", "..\\..\\etc"), "/..\\..\\etc");
    assert.equal(fs.resolve("/", "Grüße/日本"), "/Grüße/日本");
    for (const bad of ["a\0b", "a\r\nDELE b", "x\n", "\r"]) {
      assert.throws(() => fs.resolve("/", bad), (e: unknown) => e instanceof FtpFsError && e.code === 550);
    }
  } finally {
    await cleanup();
  }
});

Deno.test("traversal tricks stay inside the jail", async () => {
  const { base, fs, cleanup } = await setup();
  try {
    const up = fs.resolve("/sub", "../../outside/secret.txt");
    await assertFsError(fs.openRead(up, 0), 550, base);
    await assertFsError(fs.openRead(fs.resolve("/", "%2e%2e/outside/secret.txt"), 0), 550, base);
    await assertFsError(fs.openRead(fs.resolve("/", "..\\outside\\secret.txt"), 0), 550, base);
    await assertFsError(fs.openRead(fs.resolve("/", "/etc/passwd"), 0), 550, base);
    assert.equal(await readAll(await fs.openRead(fs.resolve("/sub", "../a.txt"), 0)), "hello");
    // A file literally named with a backslash works and stays inside.
    await Deno.writeTextFile(`${fs.root}/..\\x`, "lit");
    assert.equal(await readAll(await fs.openRead(fs.resolve("/", "..\\x"), 0)), "lit");
  } finally {
    await cleanup();
  }
});

Deno.test("symlinks leading out are refused everywhere; links inside work", async () => {
  const { base, root, fs, cleanup } = await setup();
  try {
    await Deno.symlink(`${base}/outside`, `${root}/outdir`);
    await Deno.symlink(`${base}/outside/secret.txt`, `${root}/outfile`);
    await Deno.symlink("../../outside/secret.txt", `${root}/sub/relout`);
    await Deno.symlink(`${base}/outside/nothing-yet.txt`, `${root}/dangling_out`);
    await Deno.symlink(`/etc`, `${root}/etc`);
    await Deno.symlink("a.txt", `${root}/in_file`);
    await Deno.symlink("sub", `${root}/in_dir`);
    await Deno.symlink("missing.txt", `${root}/dangling_in`);

    for (const v of ["/outdir/secret.txt", "/outfile", "/sub/relout", "/etc/passwd", "/outdir"]) {
      await assertFsError(fs.openRead(v, 0), 550, base);
      await assertFsError(fs.stat(v), 550, base);
      assert.equal(await fs.exists(v), false, v);
    }
    await assertFsError(fs.list("/outdir"), 550, base);
    await assertFsError(fs.list("/etc"), 550, base);
    // Writes through links leading out (also dangling ones) never create or change outside files.
    await assertFsError(fs.openUpload("/outfile", { mode: "replace", offset: 0 }), 550, base);
    await assertFsError(fs.openUpload("/dangling_out", { mode: "replace", offset: 0 }), 550, base);
    await assertFsError(fs.openUpload("/outdir/new.txt", { mode: "replace", offset: 0 }), 550, base);
    await assertFsError(fs.mkdir("/outdir/newdir"), 550, base);
    await assertFsError(fs.remove("/outdir/secret.txt"), 550, base);
    await assertFsError(fs.rename("/a.txt", "/outdir/stolen.txt"), 550, base);
    await assertFsError(fs.chmod("/outfile", 0o777), 550, base);
    await assertFsError(fs.remove("/outfile"), 550, base);
    await assertFsError(fs.remove("/dangling_out"), 550, base);
    assert.equal(await Deno.readTextFile(`${base}/outside/secret.txt`), "secret");
    assert.deepEqual([...Deno.readDirSync(`${base}/outside`)].map((e) => e.name), ["secret.txt"]);

    // Inside links work.
    assert.equal(await readAll(await fs.openRead("/in_file", 0)), "hello");
    assert.equal(await readAll(await fs.openRead("/in_dir/b.txt", 0)), "bee");
    assert.equal((await fs.stat("/in_dir")).type, "dir");
    const up = await fs.openUpload("/in_dir/c.txt", { mode: "replace", offset: 0 });
    await up.file.write(enc.encode("sea"));
    await up.commit();
    assert.equal(await Deno.readTextFile(`${root}/sub/c.txt`), "sea");

    // Listing omits links leading out, shows inside links as their targets, dangling inside ones as links.
    const names = new Map((await fs.list("/")).map((e) => [e.name, e.type]));
    assert.equal(names.has("outdir"), false);
    assert.equal(names.has("outfile"), false);
    assert.equal(names.has("etc"), false);
    assert.equal(names.has("dangling_out"), false);
    assert.equal(names.get("in_file"), "file");
    assert.equal(names.get("in_dir"), "dir");
    assert.equal(names.get("dangling_in"), "link");
    assert.equal((await fs.list("/sub")).some((e) => e.name === "relout"), false);

    // Removing an inside link removes the link, not its target.
    await fs.remove("/in_file");
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "hello");
    await fs.remove("/dangling_in");
  } finally {
    await cleanup();
  }
});

Deno.test("a root that is itself reached through a symlink works", async () => {
  const { base, root, cleanup } = await setup();
  try {
    await Deno.symlink(root, `${base}/rootlink`);
    const fs = await FtpFileSystem.open(`${base}/rootlink`);
    assert.equal(fs.root, await Deno.realPath(root));
    assert.equal(await readAll(await fs.openRead("/a.txt", 0)), "hello");
    await assert.rejects(FtpFileSystem.open(`${root}/a.txt`));
    await assert.rejects(FtpFileSystem.open(`${base}/missing`));
  } finally {
    await cleanup();
  }
});

Deno.test("stat, list and openRead", async () => {
  const { base, fs, cleanup } = await setup();
  try {
    const a = await fs.stat("/a.txt");
    assert.equal(a.name, "a.txt");
    assert.equal(a.type, "file");
    assert.equal(a.size, 5);
    assert.match(a.uniqueId, /^[0-9a-f]+g[0-9a-f]+$/);
    assert.equal((await fs.stat("/")).name, "/");
    assert.equal((await fs.stat("/")).type, "dir");
    await assertFsError(fs.stat("/nope"), 550, base);
    await assertFsError(fs.list("/a.txt"), 550, base);
    await assertFsError(fs.openRead("/sub", 0), 550, base);
    assert.equal(await readAll(await fs.openRead("/a.txt", 2)), "llo");
    assert.equal(await readAll(await fs.openRead("/a.txt", 99)), "");
    const names = (await fs.list("/")).map((e) => e.name).sort();
    assert.deepEqual(names, ["a.txt", "sub"]);
    await Deno.writeTextFile(`${fs.root}/Grüße 日本.txt`, "u");
    assert.ok((await fs.list("/")).some((e) => e.name === "Grüße 日本.txt"));
    assert.equal((await fs.stat("/Grüße 日本.txt")).size, 1);
  } finally {
    await cleanup();
  }
});

Deno.test("uploads are atomic: replace, abort, append, REST, hidden temp files", async () => {
  const { base, root, fs, cleanup } = await setup();
  try {
    // Replace: the original stays intact until commit; the temp file is hidden from list.
    const up = await fs.openUpload("/a.txt", { mode: "replace", offset: 0 });
    await up.file.write(enc.encode("new content"));
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "hello");
    const during = [...Deno.readDirSync(root)].map((e) => e.name);
    assert.ok(during.some((n) => n.startsWith(".outpost-upload-")));
    assert.ok(!(await fs.list("/")).some((e) => e.name.startsWith(".outpost-upload-")));
    await up.commit();
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "new content");
    await up.abort(); // no-op after commit

    // Abort leaves the original and no temp behind.
    const up2 = await fs.openUpload("/a.txt", { mode: "replace", offset: 0 });
    await up2.file.write(enc.encode("partial"));
    await up2.abort();
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "new content");
    assert.ok(![...Deno.readDirSync(root)].some((e) => e.name.startsWith(".outpost-upload-")));

    // Append copies the original first.
    const ap = await fs.openUpload("/a.txt", { mode: "append", offset: 0 });
    await ap.file.write(enc.encode("+more"));
    await ap.commit();
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "new content+more");

    // Append to a missing file creates it.
    const ap2 = await fs.openUpload("/sub/fresh.txt", { mode: "append", offset: 0 });
    await ap2.file.write(enc.encode("x"));
    await ap2.commit();
    assert.equal(await Deno.readTextFile(`${root}/sub/fresh.txt`), "x");

    // REST: keep the first 3 bytes, then the new data.
    const rest = await fs.openUpload("/a.txt", { mode: "replace", offset: 3 });
    await rest.file.write(enc.encode("XYZ"));
    await rest.commit();
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "newXYZ");
    await assertFsError(fs.openUpload("/a.txt", { mode: "replace", offset: 1000 }), 550, base);

    // Large REST copy across several 64 KiB buffers.
    const big = new Uint8Array(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    await Deno.writeFile(`${root}/big.bin`, big);
    const r2 = await fs.openUpload("/big.bin", { mode: "replace", offset: 200_001 });
    await r2.file.write(big.subarray(200_001));
    await r2.commit();
    assert.deepEqual(await Deno.readFile(`${root}/big.bin`), big);

    // Uploading onto a directory or into a missing directory is refused.
    await assertFsError(fs.openUpload("/sub", { mode: "replace", offset: 0 }), 550, base);
    await assertFsError(fs.openUpload("/nodir/x.txt", { mode: "replace", offset: 0 }), 550, base);
    await assertFsError(fs.openUpload("/", { mode: "replace", offset: 0 }), 550, base);
  } finally {
    await cleanup();
  }
});

Deno.test("ENOSPC maps to 552 without a host path", () => {
  const e = Object.assign(new Error("No space left on device (os error 28): write '/srv/x'"), {
    code: "ENOSPC",
  });
  const f = toFtpFsError(e);
  assert.equal(f.code, 552);
  assert.equal(f.message, "Upload aborted: the disk is full.");
  const g = toFtpFsError(new Deno.errors.NotFound("open '/srv/secret/path'"));
  assert.equal(g.code, 550);
  assert.ok(!g.message.includes("/"));
  assert.equal(toFtpFsError(new Error("weird '/x'")).code, 451);
  const cap = toFtpFsError(new Deno.errors.NotCapable("Requires read access to '/srv/x'"));
  assert.equal(cap.code, 550);
  assert.equal(cap.message, "Permission denied.");
});

Deno.test("mkdir, rmdir, remove, rename, chmod, exists, uniqueName", async () => {
  const { base, root, fs, cleanup } = await setup();
  try {
    await fs.mkdir("/new");
    assert.ok((await Deno.stat(`${root}/new`)).isDirectory);
    await assertFsError(fs.mkdir("/new"), 550, base);
    await assertFsError(fs.mkdir("/a/b/c"), 550, base);
    await assertFsError(fs.mkdir("/"), 550, base);
    await assertFsError(fs.rmdir("/sub"), 550, base); // not empty
    await assertFsError(fs.rmdir("/a.txt"), 550, base);
    await assertFsError(fs.rmdir("/"), 550, base);
    await fs.rmdir("/new");
    assert.equal(await fs.exists("/new"), false);
    await assertFsError(fs.remove("/sub"), 550, base); // DELE never removes a directory
    await assertFsError(fs.remove("/missing"), 550, base);
    await fs.rename("/a.txt", "/sub/deeper/moved.txt");
    assert.equal(await fs.exists("/a.txt"), false);
    assert.equal(await Deno.readTextFile(`${root}/sub/deeper/moved.txt`), "hello");
    await fs.rename("/sub/deeper", "/renamed_dir");
    assert.equal(await fs.exists("/renamed_dir/moved.txt"), true);
    await assertFsError(fs.rename("/missing", "/x"), 550, base);
    await assertFsError(fs.rename("/", "/x"), 550, base);
    await assertFsError(fs.rename("/renamed_dir/moved.txt", "/sub"), 550, base);
    await fs.chmod("/renamed_dir/moved.txt", 0o4755);
    assert.equal((await Deno.stat(`${root}/renamed_dir/moved.txt`)).mode! & 0o7777, 0o755);
    await fs.remove("/renamed_dir/moved.txt");
    assert.equal(await fs.exists("/renamed_dir/moved.txt"), false);

    await Deno.writeTextFile(`${root}/r.txt`, "1");
    assert.equal(await fs.uniqueName("/", "q.txt"), "/q.txt");
    assert.equal(await fs.uniqueName("/", "r.txt"), "/r.txt.1");
    assert.equal(await fs.uniqueName("/sub", "../../r.txt"), "/sub/r.txt");
    assert.equal(await fs.uniqueName("/sub"), "/sub/file");
    await assertFsError(fs.uniqueName("/missing"), 550, base);
  } finally {
    await cleanup();
  }
});

Deno.test("jail: with syncUploads off an upload still lands atomically", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${root}/a.txt`, "old");
    const fs = await FtpFileSystem.open(root, { syncUploads: false });
    assert.equal(fs.syncUploads, false);
    const up = await fs.openUpload("/a.txt", { mode: "replace", offset: 0 });
    await up.file.write(new TextEncoder().encode("new"));
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "old");
    await up.commit();
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "new");
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["a.txt"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
