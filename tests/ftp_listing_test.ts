import assert from "node:assert/strict";
import { type FtpFileInfo, FULL_ACCESS, READ_ONLY } from "../src/ftp/ftp_file_system.ts";
import {
  formatFtpTime,
  formatListLine,
  formatMlsxFacts,
  formatNlstLine,
  sanitizeForReply,
} from "../src/ftp/listing.ts";

function info(over: Partial<FtpFileInfo>): FtpFileInfo {
  return {
    name: "name",
    type: "file",
    size: 1234,
    mtime: new Date(Date.UTC(2026, 10, 29, 12, 0, 0)),
    mode: 0o100644,
    nlink: 1,
    uid: 1000,
    gid: 1000,
    uniqueId: "803g1a",
    ...over,
  };
}

const NOW = new Date(Date.UTC(2026, 11, 10, 8, 0, 0));

Deno.test("formatListLine: recent file in the exact ls -l layout", () => {
  assert.equal(formatListLine(info({}), NOW), "-rw-r--r--   1 ftp      ftp          1234 Nov 29 12:00 name");
});

Deno.test("formatListLine: old file shows the year, single-digit day padded", () => {
  const line = formatListLine(info({ mtime: new Date(Date.UTC(2024, 0, 5, 3, 4, 5)), size: 0 }), NOW);
  assert.equal(line, "-rw-r--r--   1 ftp      ftp             0 Jan  5  2024 name");
});

Deno.test("formatListLine: directories, special bits, future dates, big sizes, UTF-8 and CR/LF", () => {
  assert.match(
    formatListLine(info({ type: "dir", mode: 0o40755, nlink: 12 }), NOW),
    /^drwxr-xr-x {2}12 ftp /,
  );
  assert.match(formatListLine(info({ mode: 0o104755 }), NOW), /^-rwsr-xr-x /);
  assert.match(formatListLine(info({ type: "dir", mode: 0o41777 }), NOW), /^drwxrwxrwt /);
  assert.match(formatListLine(info({ mode: 0o101644 }), NOW), /^-rw-r--r-T /);
  assert.match(formatListLine(info({ mode: null, type: "dir" }), NOW), /^drwxr-xr-x /);
  assert.match(formatListLine(info({ type: "link", mode: 0o120777 }), NOW), /^lrwxrwxrwx /);
  const future = formatListLine(info({ mtime: new Date(Date.UTC(2027, 5, 1)) }), NOW);
  assert.match(future, / Jun {2}1 {2}2027 name$/);
  assert.match(formatListLine(info({ size: 68719476736 }), NOW), / 68719476736 Nov 29 12:00 name$/);
  assert.match(formatListLine(info({ name: "Grüße 日本.txt" }), NOW), / Grüße 日本\.txt$/);
  assert.match(formatListLine(info({ name: "a\r\nb" }), NOW), / ab$/);
  assert.match(formatListLine(info({ mtime: null }), NOW), / Jan {2}1 {2}1970 name$/);
});

Deno.test("formatNlstLine", () => {
  assert.equal(formatNlstLine(info({ name: "x y.txt" })), "x y.txt");
  assert.equal(formatNlstLine(info({ name: "x\0y" })), "xy");
});

Deno.test("formatFtpTime is strict UTC YYYYMMDDHHMMSS", () => {
  assert.equal(formatFtpTime(new Date(Date.UTC(2026, 10, 29, 12, 0, 0))), "20261129120000");
  assert.equal(formatFtpTime(new Date(Date.UTC(2001, 0, 2, 3, 4, 5, 999))), "20010102030405");
  assert.equal(formatFtpTime(new Date(0)), "19700101000000");
});

Deno.test("formatMlsxFacts: facts in order, perms per user", () => {
  assert.equal(
    formatMlsxFacts(info({}), FULL_ACCESS),
    "type=file;size=1234;modify=20261129120000;perm=adfrw;unique=803g1a; name",
  );
  assert.equal(
    formatMlsxFacts(info({}), READ_ONLY),
    "type=file;size=1234;modify=20261129120000;perm=r;unique=803g1a; name",
  );
  assert.equal(
    formatMlsxFacts(info({ type: "dir", size: 4096, name: "sub" }), FULL_ACCESS),
    "type=dir;size=4096;modify=20261129120000;perm=cdeflmp;unique=803g1a; sub",
  );
  assert.match(
    formatMlsxFacts(info({ type: "dir", name: "." }), READ_ONLY, { cdir: true }),
    /^type=cdir;.*perm=el;/,
  );
  assert.match(formatMlsxFacts(info({ type: "dir", name: ".." }), READ_ONLY, { pdir: true }), /^type=pdir;/);
  // A dangling link (the only kind listed as a link) uses RFC 3659's OS.unix=slink; specials are not files.
  assert.match(formatMlsxFacts(info({ type: "link" }), READ_ONLY), /^type=OS\.unix=slink;/);
  assert.match(formatMlsxFacts(info({ type: "other" }), READ_ONLY), /^type=OS\.unix=special;/);
  assert.equal(
    formatMlsxFacts(info({ mtime: null, name: "é" }), READ_ONLY),
    "type=file;size=1234;perm=r;unique=803g1a; é",
  );
});

Deno.test("sanitizeForReply strips CR, LF and NUL only", () => {
  assert.equal(sanitizeForReply("a\r\nDELE b"), "aDELE b");
  assert.equal(sanitizeForReply('ok "quoted" ü'), 'ok "quoted" ü');
  assert.equal(sanitizeForReply("n\0ul\r"), "nul");
});
