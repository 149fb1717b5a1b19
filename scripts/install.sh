#!/bin/sh
# Installs outpost on a running arm64 board (Raspberry Pi OS or another systemd distribution), as root:
# the pinned arm64 Deno runtime, the bundled app, the outpost user, the hardened unit, then starts it.
#
#   sudo scripts/install.sh [--board rpi4] [--config FILE] [--bundle-dir DIR] [--deno FILE]
#
# From a repo checkout on a board with internet access nothing else is needed: the runtime is downloaded from the
# npm registry (SHA-512 checked) and the app is bundled on the board. For an offline board, make the bundles on a
# PC (deno run -A scripts/bundle_outpost.ts build/) and the runtime (deno run -A scripts/deno_arm64.ts), copy them
# over and pass --bundle-dir build/ --deno PATH.
# Re-running it upgrades in place and keeps the existing config, state and FTP data.
set -eu

DENO_VERSION=2.9.6
DENO_TARBALL_URL="https://registry.npmjs.org/@deno/linux-arm64-glibc/-/linux-arm64-glibc-${DENO_VERSION}.tgz"
DENO_INTEGRITY="poqhoH9B3nYloigEMPT5t8HY+wBeiuea1An5Q7fqgJzP0SYmWsoS/oUnWO/pEiA4ofzIBy1Elt/in58xKtxEoQ=="
PREFIX=/opt/outpost
REPO=$(cd "$(dirname "$0")/.." && pwd)

board=""
config=""
bundle_dir=""
deno_bin=""
start=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --board) board=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --bundle-dir) bundle_dir=$2; shift 2 ;;
    --deno) deno_bin=$2; shift 2 ;;
    --no-start) start=no; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

die() { echo "install.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

[ "$(id -u)" = 0 ] || die "run it as root (sudo scripts/install.sh ...)."
[ "$(uname -m)" = aarch64 ] || die "this board is $(uname -m); outpost needs a 64-bit (arm64/aarch64) OS. On a Pi, flash Raspberry Pi OS Lite (64-bit)."
command -v systemctl >/dev/null || die "systemd is required (systemctl not found)."
page=$(getconf PAGESIZE)
if [ "$page" != 4096 ]; then
  die "the kernel uses ${page}-byte pages; Deno needs 4096. On a Pi 5 add \"kernel=kernel8.img\" to /boot/firmware/config.txt, reboot, and run this again."
fi

# Guess the board from the device tree when not given.
if [ -z "$board" ]; then
  model=$(tr -d '\0' </proc/device-tree/model 2>/dev/null || true)
  case "$model" in
    *"Raspberry Pi 5"*) board=rpi5 ;;
    *"Raspberry Pi 4"*) board=rpi4 ;;
    *"Raspberry Pi 3"*) board=rpi3 ;;
    *"Raspberry Pi Zero 2"*) board=rpi-zero2w ;;
    *) board=generic-arm64 ;;
  esac
  step "Board: $board (${model:-unknown model}; pass --board to choose another)"
fi
[ -f "$REPO/boards/$board.toml" ] || die "no board profile boards/$board.toml (see boards/ for the list)."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The runtime.
if [ -z "$deno_bin" ]; then
  step "Downloading Deno $DENO_VERSION for arm64 from the npm registry"
  curl -fsSL --retry 3 -o "$work/deno.tgz" "$DENO_TARBALL_URL"
  got=$(openssl dgst -sha512 -binary "$work/deno.tgz" | base64 -w0)
  [ "$got" = "$DENO_INTEGRITY" ] || die "the downloaded runtime's SHA-512 does not match the pinned one; not installing it."
  tar -xzf "$work/deno.tgz" -C "$work" package/deno
  deno_bin="$work/package/deno"
fi
"$deno_bin" --version >/dev/null 2>&1 || die "$deno_bin does not run on this board."

# 2. The app bundles (outpost.js, outpost-prepare.js, outpost-make-unit.js).
if [ -z "$bundle_dir" ]; then
  step "Bundling outpost (fetches its npm dependencies once)"
  bundle_dir="$work/bundle"
  (cd "$REPO" && DENO_NO_UPDATE_CHECK=1 "$deno_bin" run -A scripts/bundle_outpost.ts "$bundle_dir" >/dev/null)
fi
for f in outpost.js outpost-prepare.js outpost-make-unit.js; do
  [ -f "$bundle_dir/$f" ] || die "$bundle_dir/$f is missing (make the bundles with scripts/bundle_outpost.ts)."
done

# 3. The config on the boot partition: the given one, else the one already there (kept on upgrades), else the
# board's template. It is checked with the new runtime and bundle BEFORE anything is installed or replaced, so a
# bad config leaves the board (and a running outpost) as it was.
if [ -d /boot/firmware ]; then boot=/boot/firmware; elif [ -d /boot ]; then boot=/boot; else boot=/etc/outpost; fi
target="$boot/outpost.toml"
if [ -n "$config" ]; then
  [ -f "$config" ] || die "$config does not exist."
  candidate=$config
elif [ -f "$target" ]; then
  candidate=$target
else
  candidate="$REPO/boards/$board.outpost.toml"
  [ -f "$candidate" ] || die "no config template boards/$board.outpost.toml."
fi
step "Checking the config $candidate"
if ! OUTPOST_BOARDS_DIR="$REPO/boards" DENO_DIR="$work/deno-dir" "$deno_bin" run --no-config --no-npm --no-remote \
  --no-prompt -A "$bundle_dir/outpost.js" check-config "$candidate" >/dev/null; then
  die "$candidate is not valid (the lines above say why); fix it and run this again. Nothing was changed."
fi

# 4. Files.
step "Installing into $PREFIX"
install -d -m 0755 -o root -g root "$PREFIX" "$PREFIX/bin" "$PREFIX/boards"
install -m 0755 -o root -g root "$deno_bin" "$PREFIX/bin/deno.new"
mv -f "$PREFIX/bin/deno.new" "$PREFIX/bin/deno"
for f in outpost.js outpost-prepare.js outpost-make-unit.js; do
  install -m 0644 -o root -g root "$bundle_dir/$f" "$PREFIX/$f"
done
install -m 0644 -o root -g root "$REPO"/boards/*.toml "$PREFIX/boards/"
if [ -f "$REPO/README.md" ]; then install -m 0644 -o root -g root "$REPO/README.md" "$PREFIX/README.md"; fi

install -d -m 0755 "$boot"
if [ "$candidate" = "$target" ]; then
  step "Config: keeping $target"
elif [ -n "$config" ]; then
  install -m 0644 "$config" "$target"
  step "Config: $config copied to $target"
else
  install -m 0644 "$candidate" "$target"
  step "Config: $target created from the $board template (edit it, then: systemctl restart outpost)"
fi

install -d -m 0755 /usr/local/bin
cat >/usr/local/bin/outpost.new <<EOF
#!/bin/sh
# outpost CLI for administrators (check-config, sensors, passwd, ...).
export OUTPOST_BOARDS_DIR=$PREFIX/boards OUTPOST_CONFIG=\${OUTPOST_CONFIG:-$target}
exec $PREFIX/bin/deno run --no-config --no-npm --no-remote --no-prompt -A $PREFIX/outpost.js "\$@"
EOF
chmod 0755 /usr/local/bin/outpost.new
mv -f /usr/local/bin/outpost.new /usr/local/bin/outpost

step "Checking the installed CLI"
/usr/local/bin/outpost check-config "$target" >/dev/null || die "the installed outpost CLI cannot validate $target."

# 5. Units, user and start.
step "Generating the systemd units for this config"
DENO_DIR="$work/deno-dir" "$PREFIX/bin/deno" run --no-config --no-npm --no-remote --no-prompt -A \
  "$PREFIX/outpost-make-unit.js" --config "$target" --board "$board" --boards-dir "$PREFIX/boards" \
  --prefix "$PREFIX" --out-dir "$work/units"
install -m 0644 -o root -g root "$work/units/outpost.service" /etc/systemd/system/outpost.service
install -m 0644 -o root -g root "$work/units/outpost-firstboot.service" /etc/systemd/system/outpost-firstboot.service
install -m 0755 -o root -g root "$work/units/firstboot.sh" "$PREFIX/firstboot.sh"
step "Creating the outpost user and folders"
"$PREFIX/firstboot.sh"
systemctl daemon-reload
if [ "$start" = yes ]; then
  step "Enabling and starting outpost.service"
  systemctl enable outpost.service
  systemctl restart outpost.service
  systemctl --no-pager --lines=5 status outpost.service || true
  echo
  echo "Done. Logs: journalctl -u outpost -f    Config: $target    Reload after edits: systemctl reload outpost"
else
  systemctl enable outpost.service
  echo "Done (not started). Start it with: systemctl start outpost"
fi
