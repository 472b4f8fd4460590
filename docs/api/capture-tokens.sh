#!/usr/bin/env bash
# Captures real requests and responses of the token and admin APIs for docs/api/tokens.md:
# starts `sigil serve` on a temporary data directory and a free port, runs the calls, and
# prints each as Markdown (request, status, body). Usage: docs/api/capture-tokens.sh [SIGIL]
set -euo pipefail
source "$(dirname "$0")/capture-lib.sh" "${1:-}"

A=(-H 'x-internal-secret: s3cret-for-the-docs')
J=(-H 'content-type: application/json')
UA=(-A 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36')

echo '## Captured session'
echo
show "Create a group" "${A[@]}" "${J[@]}" "$BASE/api/admin/groups" -d '{"name":"ops","ip_allowlist":["10.0.0.0/8","2001:db8::/32"]}'
show "Create an account" "${A[@]}" "${J[@]}" "$BASE/api/admin/users" \
  -d '{"username":"alice","password":"correct horse battery","email":"alice@example.com","firstname":"Alice","lastname":"Liddell","phone":"+14155550123"}'
GUID=$(json '["guid"]')
show "The same username in another case" "${A[@]}" "${J[@]}" "$BASE/api/admin/users" -d '{"username":"ALICE","password":"another password"}'
show "Log in" "${UA[@]}" "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"correct horse battery"}'
TOKEN=$(json '["access_token"]')
show "Who am I" "$BASE/api/auth/token" -H "authorization: Bearer $TOKEN"
show "A wrong password (or an unknown user)" "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"guess"}'
show "Log in again, hidden from the own list" -A 'curl/8.5.0' "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"correct horse battery","hide_session":true}'
show "Log in with a one-time token" "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"correct horse battery","onetime":true}'
ONCE=$(json '["access_token"]')
show "A one-time token works once" "$BASE/api/auth/token" -H "authorization: Bearer $ONCE"
show "… and then never again" "$BASE/api/auth/token" -H "authorization: Bearer $ONCE"
show "List my tokens" "$BASE/api/auth/tokens" -H "authorization: Bearer $TOKEN"
show "Enrol TOTP (admin)" "${A[@]}" "${J[@]}" "$BASE/api/admin/users/$GUID/2fa/totp" -d '{}'
SECRET=$(json '["secret"]')
RECOVERY=$(json '["recovery_codes"][0]')
show "Log in: now a second factor is due" "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"correct horse battery"}'
PENDING=$(json '["access_token"]')
show "Until verified, the token only does 2fa and logout" "$BASE/api/auth/token" -H "authorization: Bearer $PENDING"
CODE=$(totp "$SECRET")
show "A wrong TOTP code" "${J[@]}" "$BASE/api/auth/2fa/totp" -d "{\"access_token\":\"$PENDING\",\"token\":\"000000\"}"
show "The right TOTP code (from an authenticator app)" "${J[@]}" "$BASE/api/auth/2fa/totp" -d "{\"access_token\":\"$PENDING\",\"token\":\"$CODE\"}"
show "The same code on another login: each step is accepted once" "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"correct horse battery"}'
SECOND=$(json '["access_token"]')
show "… refused" "${J[@]}" "$BASE/api/auth/2fa/totp" -d "{\"access_token\":\"$SECOND\",\"token\":\"$CODE\"}"
show "A recovery code instead" "${J[@]}" "$BASE/api/auth/2fa/otp" -d "{\"access_token\":\"$SECOND\",\"token\":\"$RECOVERY\"}"
show "SMS as the default second factor (admin)" "${A[@]}" "${J[@]}" -X PATCH "$BASE/api/admin/users/$GUID" -d '{"default_2fa":"mobile"}'
show "Log in: the SMS goes out" "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"correct horse battery"}'
SMS_TOKEN=$(json '["access_token"]')
show "The outbox of the log sender (admin)" "${A[@]}" "$BASE/api/admin/outbox?to=%2B14155550123"
SMS=$(json '[-1]["code"]')
show "Resend: at most every 30 s" "${J[@]}" "$BASE/api/auth/2fa/resend" -d "{\"access_token\":\"$SMS_TOKEN\"}"
show "The SMS code, spaces and all" "${J[@]}" "$BASE/api/auth/2fa/mobile" -d "{\"access_token\":\"$SMS_TOKEN\",\"token\":\"${SMS:0:2} ${SMS:2:2} ${SMS:4:2}\"}"
show "Revoke a token by its guid" "$BASE/api/auth/tokens" -H "authorization: Bearer $TOKEN"
VICTIM=$(json '[-1]["_meta"]["guid"]')
show "… DELETE" -X DELETE "$BASE/api/auth/tokens/$VICTIM" -H "authorization: Bearer $TOKEN"
show "Put alice in the ops group (admin)" "${A[@]}" "${J[@]}" -X PATCH "$BASE/api/admin/users/$GUID" -d '{"group":"ops","default_2fa":null}'
show "A login from outside the allow-list (via a trusted proxy)" -H 'x-forwarded-for: 192.0.2.7' "${J[@]}" "$BASE/api/auth/login" -d '{"username":"alice","password":"correct horse battery"}'
show "Malformed JSON" "${J[@]}" "$BASE/api/auth/login" -d '{"username":'
show "A field of the wrong type" "${J[@]}" "$BASE/api/auth/login" -d '{"username":["alice"],"password":"x"}'
show "Not JSON at all" -H 'content-type: text/plain' "$BASE/api/auth/login" -d 'username=alice'
show "Log out" -X POST "$BASE/api/auth/logout" -H "authorization: Bearer $TOKEN"
show "The token is dead at once" "$BASE/api/auth/token" -H "authorization: Bearer $TOKEN"
show "List accounts (admin)" "${A[@]}" "$BASE/api/admin/users"
show "Delete the account: every token dies with it (admin)" "${A[@]}" -X DELETE "$BASE/api/admin/users/$GUID"
