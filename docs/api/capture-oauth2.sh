#!/usr/bin/env bash
# Captures a complete OAuth2 / OpenID Connect walk-through against a real sigil for
# docs/api/oauth2.md. Usage: docs/api/capture-oauth2.sh [SIGIL]
set -euo pipefail
source "$(dirname "$0")/capture-lib.sh" "${1:-}"

A=(-H 'x-internal-secret: s3cret-for-the-docs')
J=(-H 'content-type: application/json')
REDIRECT='https://app.example/callback'
enc() { python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$1"; }

curl -s "${A[@]}" "${J[@]}" "$BASE/api/admin/users" -o /dev/null \
  -d '{"username":"alice","password":"correct horse battery","email":"alice@example.com"}'
SESSION=$(curl -s "${J[@]}" "$BASE/v1/auth/login" -d '{"login":"alice","password":"correct horse battery"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')

echo '## Walk-through (captured)'
echo
echo '(An account `alice` exists and has a `/v1` session: `$SESSION` below is its token, sent as Bearer here; in a browser the session cookie does the same.)'
echo
show "Discovery" "$BASE/.well-known/openid-configuration"
show "Register a confidential client (admin)" "${A[@]}" "${J[@]}" "$BASE/v1/oauth2/applications" \
  -d "{\"name\":\"Example app\",\"redirect_uris\":[\"$REDIRECT\"],\"confidential\":true}"
CLIENT=$(json '["client_id"]')
SECRET=$(json '["client_secret"]')
VERIFIER=dBjftJeZ4CVP-mJ92K9yU3dA0cqFuDiTazt5MbIgwkdQQL7pVmX3tK
CHALLENGE=$(python3 -c 'import base64,hashlib,sys;print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$VERIFIER")
Q="response_type=code&client_id=$CLIENT&redirect_uri=$(enc "$REDIRECT")&scope=openid%20email%20offline_access&state=af0ifjsldkj&nonce=n-0S6_WzA2Mj&code_challenge=$CHALLENGE&code_challenge_method=S256"
show "The person's browser is sent to the authorization endpoint (with its session): the consent request" \
  -H "authorization: Bearer $SESSION" "$BASE/v1/oauth2/authorize?$Q"
CONSENT=$(json '["consent_token"]')
show "The person approves: 302 to the client with the code" -H "authorization: Bearer $SESSION" \
  --data-urlencode "consent_token=$CONSENT" -d approve=true "$BASE/v1/oauth2/authorize?$Q"
CODE=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.parse_qs(urllib.parse.urlsplit(sys.argv[1]).query)["code"][0])' "$LOCATION")
show "The client exchanges the code (client_secret_basic, PKCE verifier)" -u "$CLIENT:$SECRET" \
  -d grant_type=authorization_code --data-urlencode "code=$CODE" --data-urlencode "redirect_uri=$REDIRECT" \
  -d "code_verifier=$VERIFIER" "$BASE/v1/oauth2/token"
ACCESS=$(json '["access_token"]')
REFRESH=$(json '["refresh_token"]')
IDTOKEN=$(json '["id_token"]')
echo 'The `id_token` decoded (header and claims; verify it with the JWKS below):'
echo
echo '```json'
python3 -c '
import base64, json, sys
h, c, _ = sys.argv[1].split(".")
d = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
print(json.dumps({"header": d(h), "claims": d(c)}, indent=2))' "$IDTOKEN"
echo '```'
echo
show "The same code again: refused, and the token it issued is revoked" -u "$CLIENT:$SECRET" \
  -d grant_type=authorization_code --data-urlencode "code=$CODE" --data-urlencode "redirect_uri=$REDIRECT" \
  -d "code_verifier=$VERIFIER" "$BASE/v1/oauth2/token"
show "userinfo with that token: gone" -H "authorization: Bearer $ACCESS" "$BASE/v1/oauth2/userinfo"
show "A second authorization: consent remembered, the code comes at once" -H "authorization: Bearer $SESSION" "$BASE/v1/oauth2/authorize?$Q"
CODE=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.parse_qs(urllib.parse.urlsplit(sys.argv[1]).query)["code"][0])' "$LOCATION")
curl -s -u "$CLIENT:$SECRET" -d grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT" -d "code_verifier=$VERIFIER" "$BASE/v1/oauth2/token" > /tmp/sigil-oauth-tokens.json
ACCESS=$(python3 -c 'import json;print(json.load(open("/tmp/sigil-oauth-tokens.json"))["access_token"])')
REFRESH=$(python3 -c 'import json;print(json.load(open("/tmp/sigil-oauth-tokens.json"))["refresh_token"])')
rm -f /tmp/sigil-oauth-tokens.json
echo '(… exchanged as above.)'
echo
show "userinfo" -H "authorization: Bearer $ACCESS" "$BASE/v1/oauth2/userinfo"
show "The access token is a Bearer token of /v1 too" -H "authorization: Bearer $ACCESS" "$BASE/v1/users/@me"
show "Introspection (RFC 7662; client authentication)" -u "$CLIENT:$SECRET" --data-urlencode "token=$ACCESS" "$BASE/v1/oauth2/introspect"
show "Refresh (rotates the refresh token)" -u "$CLIENT:$SECRET" -d grant_type=refresh_token --data-urlencode "refresh_token=$REFRESH" "$BASE/v1/oauth2/token"
NEW_ACCESS=$(json '["access_token"]')
show "The old refresh token again: the whole family is revoked" -u "$CLIENT:$SECRET" -d grant_type=refresh_token --data-urlencode "refresh_token=$REFRESH" "$BASE/v1/oauth2/token"
show "… including the access token the rotation just issued" -u "$CLIENT:$SECRET" --data-urlencode "token=$NEW_ACCESS" "$BASE/v1/oauth2/introspect"
show "client_credentials (client_secret_post)" -d grant_type=client_credentials -d scope=identify \
  -d "client_id=$CLIENT" --data-urlencode "client_secret=$SECRET" "$BASE/v1/oauth2/token"
CC=$(json '["access_token"]')
show "Revocation (RFC 7009): always 200" -u "$CLIENT:$SECRET" --data-urlencode "token=$CC" "$BASE/v1/oauth2/revoke"
show "A wrong client secret" -u "$CLIENT:wrong" -d grant_type=client_credentials "$BASE/v1/oauth2/token"
show "An unregistered redirect URI: an error page, never a redirect" -H "authorization: Bearer $SESSION" \
  "$BASE/v1/oauth2/authorize?response_type=code&client_id=$CLIENT&redirect_uri=$(enc https://evil.example/cb)&scope=openid"
show "JWKS" "$BASE/v1/oauth2/jwks"
