#!/bin/bash
# outpost boot test agent (test fixture, baked into the boot test's base image, never into a real one).
# Reads one request per line from the virtio serial port: "<id> <base64 script>", runs the script with bash
# (bounded by timeout), answers "RES <id> <exit status> <base64 output>". The host side is scripts/boot/qemu.ts.
port=/dev/virtio-ports/org.outpost.agent
for _ in $(seq 1 120); do [ -e "$port" ] && break; sleep 1; done
[ -e "$port" ] || { echo "outpost-test-agent: no $port" >&2; exit 1; }
work=/run/outpost-test-agent
mkdir -p "$work"
while true; do
  exec 3<>"$port"
  while IFS= read -r line <&3; do
    id=${line%% *}
    printf '%s' "${line#* }" | base64 -d > "$work/script" 2>/dev/null || { echo "RES $id 254 " >&3; continue; }
    timeout 300 bash "$work/script" > "$work/out" 2>&1 < /dev/null
    rc=$?
    printf 'RES %s %s %s\n' "$id" "$rc" "$(base64 -w0 < "$work/out")" >&3
  done
  exec 3<&-
  sleep 1
done
