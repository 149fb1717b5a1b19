#!/bin/sh
# Builds a flashable outpost SD-card image from a stock Raspberry Pi OS Lite (64-bit) image, without root.
#   scripts/build-image.sh --base 2024-11-19-raspios-bookworm-arm64-lite.img.xz --board rpi4 --out outpost-rpi4.img
# Options: see scripts/build_image.ts (--help). Uses Deno from PATH, else the pinned one via npx.
set -eu
cd "$(dirname "$0")/.."
if command -v deno >/dev/null 2>&1; then
  exec deno run --allow-all scripts/build_image.ts "$@"
fi
exec npx --yes deno@2.9.6 run --allow-all scripts/build_image.ts "$@"
