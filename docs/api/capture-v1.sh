#!/usr/bin/env bash
# Captures real requests and responses of the account API (/v1) for docs/api/v1.md: starts
# `sigil serve` on a temporary data directory and a free port, runs the calls, and prints each
# as Markdown. Usage: docs/api/capture-v1.sh [SIGIL]
set -euo pipefail
source "$(dirname "$0")/capture-lib.sh" "${1:-}"

A=(-H 'x-internal-secret: s3cret-for-the-docs')
J=(-H 'content-type: application/json')
O=(-H 'origin: http://127.0.0.1:16127')
UA=(-A 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15')

echo '## Captured session'
echo
curl -s "${A[@]}" "${J[@]}" "$BASE/api/admin/users" -o /dev/null \
  -d '{"username":"alice","password":"correct horse battery","email":"alice@example.com","phone":"+14155550123"}'
curl -s "${A[@]}" "${J[@]}" "$BASE/api/admin/users" -o /dev/null -d '{"username":"bob","password":"bob the builder","email":"bob@example.com"}'
echo '(Accounts `alice` — with email and phone — and `bob` were made with `POST /api/admin/users`.)'
echo
show "Log in (no second factor yet): the session as cookie and as token" "${UA[@]}" "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"alice","password":"correct horse battery"}'
TOKEN=$(json '["token"]')
C=(-b "sigil_session=$TOKEN")
show "The caller's account, by cookie" "${C[@]}" "$BASE/v1/users/@me"
show "A wrong password (or an unknown login)" "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"alice","password":"guess"}'
show "A field of the wrong type" "${J[@]}" "$BASE/v1/auth/login" -d '{"login":42,"password":"x"}'
show "A second session, by email, from a native app" -A 'MyApp/2.1 (iPhone; iOS 17.1)' "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"ALICE@example.com","password":"correct horse battery"}'
NATIVE=$(json '["token"]')
show "The sessions, by Bearer token" "$BASE/v1/auth/sessions" -H "authorization: Bearer $NATIVE"
NATIVE_ID=$(json '[-1]["id"]')
show "A cookie-authenticated change without our Origin (CSRF check)" "${C[@]}" -X POST "$BASE/v1/auth/sessions/logout" "${J[@]}" -d "{\"session_ids\":[\"$NATIVE_ID\"]}"
show "… with our Origin, but without sudo mode" "${C[@]}" "${O[@]}" -X POST "$BASE/v1/auth/sessions/logout" "${J[@]}" -d "{\"session_ids\":[\"$NATIVE_ID\"]}"
show "Sudo mode by password" "${C[@]}" "${O[@]}" "${J[@]}" "$BASE/v1/auth/sudo/verify" -d '{"password":"correct horse battery"}'
SUDO=$(json '["sudo_token"]')
S=(-b "sigil_session=$TOKEN; sigil_sudo_mode=$SUDO")
show "End the native session (sudo)" "${S[@]}" "${O[@]}" -X POST "$BASE/v1/auth/sessions/logout" "${J[@]}" -d "{\"session_ids\":[\"$NATIVE_ID\"]}"
SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
show "Enrol TOTP: the app made the secret, the code proves it (sudo)" "${S[@]}" "${O[@]}" "${J[@]}" "$BASE/v1/users/@me/mfa/totp/enable" -d "{\"secret\":\"$SECRET\",\"code\":\"$(totp $SECRET)\"}"
RECOVERY=$(json '["recovery_codes"][0]')
show "Log in: now an MFA ticket, no cookie" "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"alice","password":"correct horse battery"}'
TICKET=$(json '["ticket"]')
show "A wrong code" "${J[@]}" "$BASE/v1/auth/mfa/totp" -d "{\"ticket\":\"$TICKET\",\"code\":\"000000\"}"
show "A recovery code (accepted on /mfa/totp as well)" "${J[@]}" "$BASE/v1/auth/mfa/totp" -d "{\"ticket\":\"$TICKET\",\"code\":\"$RECOVERY\"}"
show "The ticket is spent" "${J[@]}" "$BASE/v1/auth/mfa/totp" -d "{\"ticket\":\"$TICKET\",\"code\":\"$RECOVERY\"}"
show "SMS instead: log in…" "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"alice","password":"correct horse battery"}'
TICKET=$(json '["ticket"]')
show "… send the code" "${J[@]}" "$BASE/v1/auth/mfa/sms/send" -d "{\"ticket\":\"$TICKET\"}"
show "… (the log sender's outbox, admin)" "${A[@]}" "$BASE/api/admin/outbox?to=%2B14155550123"
SMS=$(json '[-1]["code"]')
show "… answer it" "${J[@]}" "$BASE/v1/auth/mfa/sms" -d "{\"ticket\":\"$TICKET\",\"code\":\"${SMS:0:2} ${SMS:2:2} ${SMS:4:2}\"}"
show "bob's first login authorizes its address" "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"bob","password":"bob the builder"}'
show "bob from a new address (behind a trusted proxy)" -H 'x-forwarded-for: 192.0.2.44' "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"bob","password":"bob the builder"}'
WAIT=$(json '["ticket"]')
show "The waiting client polls (or listens on /v1/auth/authorize-ip/ws?ticket=…)" "$BASE/v1/auth/authorize-ip/poll?ticket=$WAIT"
show "The code went to bob's email (outbox, admin)" "${A[@]}" "$BASE/api/admin/outbox?to=bob@example.com"
CODE=$(json '[-1]["code"]')
show "bob approves" "${J[@]}" "$BASE/v1/auth/authorize-ip" -d "{\"code\":\"$CODE\"}"
show "The waiting client gets its session, once" "$BASE/v1/auth/authorize-ip/poll?ticket=$WAIT"
show "Handoff: a new device starts" -X POST "$BASE/v1/auth/handoff/initiate"
HCODE=$(json '["code"]')
HSECRET=$(json '["poll_secret"]')
show "… polls" "$BASE/v1/auth/handoff/$HCODE/status" -H "x-handoff-secret: $HSECRET"
show "… alice's browser approves the code as typed" "${C[@]}" "${O[@]}" -X POST "$BASE/v1/auth/handoff/$(echo "$HCODE" | tr 'A-Z' 'a-z' | tr -d '-')/complete"
show "… the device's next poll gets its own session" "$BASE/v1/auth/handoff/$HCODE/status" -H "x-handoff-secret: $HSECRET"
show "A service checks a token (internal)" "${A[@]}" "${J[@]}" "$BASE/v1/internal/sessions/validate" -d "{\"token\":\"$TOKEN\"}"
show "Log out: 204, the cookie cleared" "${C[@]}" "${O[@]}" -X POST "$BASE/v1/auth/logout"
show "The session is dead at once" "$BASE/v1/users/@me" -H "authorization: Bearer $TOKEN"
