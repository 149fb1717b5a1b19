import assert from "node:assert/strict";
import {
  cidrContains,
  formatEpsvReply,
  formatPasvReply,
  normalizeIp,
  parseEprtArg,
  parsePortArg,
  parsePortRange,
} from "../src/ftp/address.ts";

Deno.test("parsePortArg accepts h1,h2,h3,h4,p1,p2 and refuses malformed input", () => {
  assert.deepEqual(parsePortArg("127,0,0,1,4,1"), { host: "127.0.0.1", port: 1025 });
  assert.deepEqual(parsePortArg(" 10, 0, 0, 2, 195, 80 "), { host: "10.0.0.2", port: 50000 });
  for (
    const bad of [
      "",
      "127,0,0,1,4",
      "127,0,0,1,4,1,1",
      "256,0,0,1,4,1",
      "a,0,0,1,4,1",
      "127,0,0,1,0,0",
      "1,2,3,4,5,-1",
    ]
  ) {
    assert.equal(parsePortArg(bad), null, bad);
  }
});

Deno.test("parseEprtArg handles both families and any delimiter", () => {
  assert.deepEqual(parseEprtArg("|1|132.235.1.2|6275|"), { host: "132.235.1.2", port: 6275, family: 4 });
  assert.deepEqual(parseEprtArg("|2|::1|5282|"), { host: "::1", port: 5282, family: 6 });
  assert.deepEqual(parseEprtArg("!2!0:0:0:0:0:0:0:1!5282!"), { host: "::1", port: 5282, family: 6 });
  assert.deepEqual(parseEprtArg("|2|1080::8:800:200C:417A|5282|"), {
    host: "1080::8:800:200c:417a",
    port: 5282,
    family: 6,
  });
  for (
    const bad of [
      "",
      "|1|::1|5282|",
      "|2|127.0.0.1|5282|",
      "|3|127.0.0.1|5282|",
      "|1|127.0.0.1|0|",
      "|1|127.0.0.1|65536|",
      "|1|127.0.0.1|5282",
      "1|127.0.0.1|5282|",
      "|2|fe80::1%eth0|5282|",
      "|1|127.0.0.01|5282|",
    ]
  ) {
    assert.equal(parseEprtArg(bad), null, bad);
  }
});

Deno.test("PASV and EPSV replies", () => {
  assert.equal(formatPasvReply("127.0.0.1", 1025), "227 Entering Passive Mode (127,0,0,1,4,1).");
  assert.equal(
    formatPasvReply("::ffff:192.168.1.2", 50000),
    "227 Entering Passive Mode (192,168,1,2,195,80).",
  );
  assert.equal(formatEpsvReply(5282), "229 Entering Extended Passive Mode (|||5282|)");
});

Deno.test("parsePortRange", () => {
  assert.deepEqual(parsePortRange("50000-50100"), { min: 50000, max: 50100 });
  assert.deepEqual(parsePortRange("50000"), { min: 50000, max: 50000 });
  assert.deepEqual(parsePortRange("0"), { min: 0, max: 0 });
  assert.deepEqual(parsePortRange("0-0"), { min: 0, max: 0 });
  assert.equal(typeof parsePortRange("80-90"), "string");
  assert.equal(typeof parsePortRange("50100-50000"), "string");
  assert.equal(typeof parsePortRange("50000-70000"), "string");
  assert.equal(typeof parsePortRange("abc"), "string");
});

Deno.test("normalizeIp", () => {
  assert.equal(normalizeIp("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(normalizeIp("::FFFF:7f00:1"), "127.0.0.1");
  assert.equal(normalizeIp("[0:0:0:0:0:0:0:1]"), "::1");
  assert.equal(normalizeIp("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(normalizeIp("192.168.0.1"), "192.168.0.1");
  assert.equal(normalizeIp("::"), "::");
});

Deno.test("cidrContains for IPv4, IPv6 and mapped addresses", () => {
  assert.equal(cidrContains("192.168.0.0/16", "192.168.4.7"), true);
  assert.equal(cidrContains("192.168.0.0/16", "192.169.4.7"), false);
  assert.equal(cidrContains("10.0.0.0/8", "::ffff:10.1.2.3"), true);
  assert.equal(cidrContains("10.1.2.3", "10.1.2.3"), true);
  assert.equal(cidrContains("10.1.2.3/32", "10.1.2.4"), false);
  assert.equal(cidrContains("0.0.0.0/0", "8.8.8.8"), true);
  assert.equal(cidrContains("172.16.0.0/12", "172.31.255.255"), true);
  assert.equal(cidrContains("172.16.0.0/12", "172.32.0.0"), false);
  assert.equal(cidrContains("fd00::/8", "fd12::1"), true);
  assert.equal(cidrContains("fd00::/8", "fe80::1"), false);
  assert.equal(cidrContains("::1/128", "::1"), true);
  assert.equal(cidrContains("::/0", "127.0.0.1"), false);
  assert.equal(cidrContains("10.0.0.0/33", "10.0.0.1"), false);
  assert.equal(cidrContains("garbage", "10.0.0.1"), false);
});
