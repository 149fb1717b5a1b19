// The quick-start login line names this machine's LAN addresses as well as 127.0.0.1 (issue 13, item 4).
import assert from "node:assert/strict";
import { lanAddresses, loginHint } from "../src/cli/lan_addresses.ts";
import { parseConfig } from "../src/app/outpost_config.ts";
import { hashPassword } from "../src/config/password.ts";

function nic(family: "IPv4" | "IPv6", address: string): Deno.NetworkInterfaceInfo {
  return { family, address, name: "eth0", netmask: "", scopeid: null, cidr: `${address}/24`, mac: "" };
}

const NICS = [
  nic("IPv4", "127.0.0.1"),
  nic("IPv4", "192.168.1.20"),
  nic("IPv4", "10.0.0.5"),
  nic("IPv6", "::1"),
  nic("IPv6", "fe80::1"),
  nic("IPv6", "2001:db8::20"),
];

Deno.test("lanAddresses: IPv4 LAN addresses for 0.0.0.0; global IPv6 too for ::; none for a specific host", () => {
  assert.deepEqual(lanAddresses("0.0.0.0", NICS), ["192.168.1.20", "10.0.0.5"]);
  assert.deepEqual(lanAddresses("::", NICS), ["192.168.1.20", "10.0.0.5", "[2001:db8::20]"]);
  assert.deepEqual(lanAddresses("127.0.0.1", NICS), []);
});

Deno.test("quick start: the login lines name 127.0.0.1 and every LAN address, with the real port", async () => {
  const hash = await hashPassword("pw", 1000);
  const cfg = parseConfig(
    `[ftp]\nhost = "0.0.0.0"\nport = 2121\n[[ftp.users]]\nname = "outpost"\npassword_hash = "${hash}"\nroot = "/srv"\n`,
  );
  assert.deepEqual(loginHint(cfg, "k3y", 2121, NICS), [
    "FTP listening on 0.0.0.0:2121",
    "  log in: user outpost, password k3y",
    "    from this machine:  curl ftp://outpost:k3y@127.0.0.1:2121/",
    "    from the LAN:       curl ftp://outpost:k3y@192.168.1.20:2121/",
    "    from the LAN:       curl ftp://outpost:k3y@10.0.0.5:2121/",
  ]);
  assert.deepEqual(
    loginHint(cfg, "k3y", 2121, [nic("IPv4", "127.0.0.1")]).at(-1),
    "    from the LAN:       this machine's address, port 2121",
  );
  assert.deepEqual(loginHint(cfg, null, 2121, NICS), [
    "FTP listening on 0.0.0.0:2121",
    "  user outpost (password as configured), folder /srv",
  ]);
});
