#!/usr/bin/env bash
# Shared by docs/api/capture-*.sh: starts `sigil serve` on a temporary data directory and a free
# port, and defines `show`, which runs a curl call and prints it as Markdown (request, status,
# Set-Cookie headers, JSON body), keeping the body in $BODY. Sourced, with the sigil binary as
# $1 (default: the debug build).
SIGIL=${1:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')/debug/sigil}
DATA=$(mktemp -d)
LOG=$(mktemp)
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA" "$LOG"' EXIT
SIGIL_SERVER__LISTEN=127.0.0.1:0 SIGIL_SERVER__DATA_DIR="$DATA" SIGIL_ACCOUNTS__INTERNAL_SECRET=s3cret-for-the-docs \
  SIGIL_SERVER__TRUSTED_PROXIES='["127.0.0.1"]' NO_COLOR=1 "$SIGIL" serve 2>"$LOG" &
PID=$!
for _ in $(seq 100); do grep -q "listening on" "$LOG" && break; sleep 0.1; done
BASE=$(sed -n 's/.*sigil listening on \(http:[^ ]*\).*/\1/p' "$LOG" | head -1)

# show TITLE curl-args… : runs curl, prints the call and the answer, keeps the body in $BODY.
show() {
  local title=$1; shift
  local out status headers cookies
  headers=$(mktemp)
  out=$(curl -s -D "$headers" -w '\n%{http_code}' "$@")
  status=${out##*$'\n'}
  BODY=${out%$'\n'*}
  cookies=$(grep -i '^set-cookie:' "$headers" | tr -d '\r' | sed 's/^[Ss]et-[Cc]ookie: //' || true)
  LOCATION=$(grep -i '^location:' "$headers" | tr -d '\r' | sed 's/^[Ll]ocation: //' || true)
  rm -f "$headers"
  printf '### %s\n\n```sh\ncurl' "$title"
  for a in "$@"; do
    case $a in
      "$BASE"*)
        a=${a/$BASE/localhost:16127}
        case $a in *\?*|*\&*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac ;;
      *\ *|*\"*|*\&*|*\$*|*\?*|*\;*) printf " '%s'" "$a" ;;
      *) printf ' %s' "$a" ;;
    esac
  done
  printf '\n```\n\n`%s`\n\n' "$status"
  if [ -n "$cookies" ]; then
    printf '%s\n' "$cookies" | sed 's/^/    Set-Cookie: /'
    printf '\n'
  fi
  if [ -n "$LOCATION" ]; then
    printf '    Location: %s\n\n' "$LOCATION"
  fi
  if [ -n "$BODY" ]; then
    printf '```json\n%s\n```\n\n' "$(printf '%s' "$BODY" | python3 -m json.tool --indent 2 2>/dev/null || printf '%s' "$BODY")"
  fi
}

json() { python3 -c "import json,sys;print(json.load(sys.stdin)$1)" <<< "$BODY"; }

# totp BASE32: the current RFC 6238 code, computed here (Python's hmac), not by sigil.
totp() {
  python3 -c '
import base64, hashlib, hmac, struct, sys, time
key = base64.b32decode(sys.argv[1] + "=" * (-len(sys.argv[1]) % 8))
digest = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = digest[-1] & 15
print("%06d" % ((struct.unpack(">I", digest[o:o + 4])[0] & 0x7FFFFFFF) % 1000000))' "$1"
}
