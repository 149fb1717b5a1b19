#!/bin/sh
# Makes /usr/sbin/sendmail run `outpost sendmail`, so cron's MAILTO, mail(1) and other tools send through
# outpost's durable outbox (the outpost daemon delivers; see `outpost sendmail --help`).
#
#   scripts/link-sendmail.sh            show what would be done (dry run)
#   sudo scripts/link-sendmail.sh --do  write the wrapper and create the symlink
#   sudo scripts/link-sendmail.sh --undo  remove the symlink (and restore a saved original)
#
# Environment: OUTPOST (the outpost command, default: `outpost` on PATH, else `deno run -A <repo>/src/cli/main.ts`),
# OUTPOST_CONFIG (config file passed to the wrapper), WRAPPER (default /usr/local/libexec/outpost-sendmail),
# TARGET (default /usr/sbin/sendmail).
set -eu

WRAPPER="${WRAPPER:-/usr/local/libexec/outpost-sendmail}"
TARGET="${TARGET:-/usr/sbin/sendmail}"
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${OUTPOST:-}" ]; then
  if command -v outpost >/dev/null 2>&1; then
    OUTPOST="$(command -v outpost)"
  else
    OUTPOST="$(command -v deno) run -A $here/src/cli/main.ts"
  fi
fi
config_line=""
if [ -n "${OUTPOST_CONFIG:-}" ]; then config_line="export OUTPOST_CONFIG='$OUTPOST_CONFIG'"; fi

wrapper_text() {
  cat <<WRAP
#!/bin/sh
# Written by outpost scripts/link-sendmail.sh: sendmail drop-in that queues mail in outpost's outbox.
$config_line
exec $OUTPOST sendmail "\$@"
WRAP
}

case "${1:-}" in
  --do)
    mkdir -p "$(dirname "$WRAPPER")"
    wrapper_text > "$WRAPPER.tmp"
    chmod 755 "$WRAPPER.tmp"
    mv "$WRAPPER.tmp" "$WRAPPER"
    if [ -e "$TARGET" ] && [ ! -L "$TARGET" ] && [ ! -e "$TARGET.before-outpost" ]; then
      mv "$TARGET" "$TARGET.before-outpost"
      echo "Saved the existing $TARGET as $TARGET.before-outpost"
    fi
    ln -sfn "$WRAPPER" "$TARGET"
    echo "$TARGET -> $WRAPPER"
    echo "Test: printf 'Subject: test\n\nhello\n' | $TARGET -t you@example.com"
    ;;
  --undo)
    if [ -L "$TARGET" ] && [ "$(readlink "$TARGET")" = "$WRAPPER" ]; then rm -f "$TARGET"; fi
    if [ -e "$TARGET.before-outpost" ]; then mv "$TARGET.before-outpost" "$TARGET"; fi
    rm -f "$WRAPPER"
    echo "Removed the outpost sendmail link."
    ;;
  ""|--dry-run)
    echo "Would write $WRAPPER:"
    wrapper_text | sed 's/^/    /'
    echo "and link $TARGET -> $WRAPPER (an existing non-link $TARGET is kept as $TARGET.before-outpost)."
    echo "Run again with --do (as root) to do it, --undo to revert."
    ;;
  *)
    echo "usage: $0 [--dry-run|--do|--undo]" >&2
    exit 64
    ;;
esac
