// Passkey ceremonies in a real browser: headless Chromium (Debian's package) driven by
// playwright-core, with a virtual authenticator over the DevTools protocol (CTAP2, resident
// keys, user verification). The ceremonies run in a page served by sigil on
// http://localhost:PORT, exactly as a web app would run them: options from sigil →
// PublicKeyCredential.parse*OptionsFromJSON → navigator.credentials.create/get →
// credential.toJSON() → sigil.
//
// Usage:
//   node passkeys.mjs full BASE USERNAME PASSWORD INTERNAL_SECRET   → prints {"credential": …}
//   node passkeys.mjs again BASE CREDENTIAL_JSON PASSWORD           → passwordless login with a
//                                                                     credential saved by `full`,
//                                                                     then its deletion
// Exits non-zero with a message on the first check that fails.
import http from 'node:http';
import { chromium } from 'playwright-core';

const [mode, base, ...rest] = process.argv.slice(2);

// PASSKEY_TRANSCRIPT=file: record every request and answer (for docs/api/v1.md).
const transcript = [];
function record(method, path, body, status, answer) {
  if (process.env.PASSKEY_TRANSCRIPT) transcript.push({ method, path, body, status, answer });
}

function fail(message) {
  console.error(`passkeys: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

// `extra`: more flags (the wrong-RP-id check maps a second host name to loopback and lets
// its http origin run WebAuthn, as only localhost may without TLS).
async function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extra,
    ],
  });
}

// A page of `origin` with a virtual authenticator attached.
async function pageWithAuthenticator(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url);
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  return { page, cdp, authenticatorId };
}

// fetch() from inside the page (same origin: cookies and Origin as a browser sends them).
async function call(page, method, path, body, headers = {}) {
  return page.evaluate(async ([method, path, body, headers]) => {
    const init = { method, credentials: 'include', headers: { ...headers } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* empty body */ }
    return { status: res.status, body: json };
  }, [method, path, body, headers]).then((r) => { record(method, path, body, r.status, r.body); return r; });
}

// navigator.credentials.create with sigil's options; the browser's credential.toJSON().
async function create(page, publicKey) {
  return page.evaluate(async (publicKey) => {
    const options = PublicKeyCredential.parseCreationOptionsFromJSON(publicKey);
    const credential = await navigator.credentials.create({ publicKey: options });
    return credential.toJSON();
  }, publicKey);
}

async function get(page, publicKey) {
  return page.evaluate(async (publicKey) => {
    const options = PublicKeyCredential.parseRequestOptionsFromJSON(publicKey);
    const credential = await navigator.credentials.get({ publicKey: options });
    return credential.toJSON();
  }, publicKey);
}

// Passwordless login in `page`: options, the authenticator's assertion, sigil's answer.
async function passwordless(page) {
  const options = await call(page, 'POST', '/v1/auth/webauthn/authenticate/options');
  check(options.status === 200 && options.body.challenge_id, `authenticate/options: ${JSON.stringify(options)}`);
  const credential = await get(page, options.body.publicKey);
  const login = await call(page, 'POST', '/v1/auth/webauthn/authenticate', { credential, challenge_id: options.body.challenge_id });
  return { options, credential, login };
}

// Another origin than sigil's allowed ones, with the same RP id (localhost): a bare page from
// a server of this script.
async function otherOrigin() {
  const server = http.createServer((_, res) => res.end('<!doctype html><title>elsewhere</title>'));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port };
}

async function post(path, body, headers = {}) {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* empty */ }
  record('POST', path, body, res.status, json);
  return { status: res.status, body: json };
}

async function full(username, password, secret) {
  const elsewhere = await otherOrigin();
  const browser = await launch([
    '--host-resolver-rules=MAP other.test 127.0.0.1',
    `--unsafely-treat-insecure-origin-as-secure=http://other.test:${elsewhere.port}`,
  ]);
  try {
    const { page, cdp, authenticatorId } = await pageWithAuthenticator(browser, `${base}/healthz`);

    // Log in with the password, enter sudo mode, register a passkey.
    const login = await call(page, 'POST', '/v1/auth/login', { login: username, password });
    check(login.status === 200 && login.body.token, `password login: ${JSON.stringify(login)}`);
    const denied = await call(page, 'POST', '/v1/users/@me/passkeys/options');
    check(denied.status === 403 && denied.body.code === 'SUDO_MODE_REQUIRED', `options without sudo: ${JSON.stringify(denied)}`);
    const sudo = await call(page, 'POST', '/v1/auth/sudo/verify', { password });
    check(sudo.status === 200, `sudo: ${JSON.stringify(sudo)}`);
    const options = await call(page, 'POST', '/v1/users/@me/passkeys/options');
    check(options.status === 200 && options.body.publicKey.challenge, `registration options: ${JSON.stringify(options)}`);
    const sel = options.body.publicKey.authenticatorSelection;
    check(sel.residentKey === 'required' && sel.userVerification === 'required', `discoverable + UV: ${JSON.stringify(sel)}`);
    const created = await create(page, options.body.publicKey);
    const registered = await call(page, 'POST', '/v1/users/@me/passkeys', { credential: created, name: 'Laptop' });
    check(registered.status === 201 && registered.body.name === 'Laptop', `register: ${JSON.stringify(registered)}`);
    // The registration challenge was used up.
    const again = await call(page, 'POST', '/v1/users/@me/passkeys', { credential: created, name: 'Twice' });
    check(again.status === 401 && again.body.code === 'PASSKEY_AUTHENTICATION_FAILED', `registration replay: ${JSON.stringify(again)}`);
    const listed = await call(page, 'GET', '/v1/users/@me/passkeys');
    check(listed.status === 200 && listed.body.length === 1 && listed.body[0].id === registered.body.id, `list: ${JSON.stringify(listed)}`);
    const renamed = await call(page, 'PATCH', `/v1/users/@me/passkeys/${registered.body.id}`, { name: 'Work laptop' });
    check(renamed.status === 204, `rename: ${JSON.stringify(renamed)}`);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    check(credentials.length === 1 && credentials[0].isResidentCredential, `the authenticator holds one discoverable credential: ${JSON.stringify(credentials)}`);
    // A passkey alone turns on no second factor: the password still logs in directly.
    const stillDirect = await post('/v1/auth/login', { login: username, password });
    check(stillDirect.status === 200 && stillDirect.body.token, `password login after adding a passkey: ${JSON.stringify(stillDirect)}`);

    // Passwordless: log out, then log in with the passkey alone (no username).
    const out = await call(page, 'POST', '/v1/auth/logout');
    check(out.status === 204, `logout: ${JSON.stringify(out)}`);
    const first = await passwordless(page);
    check(first.login.status === 200 && first.login.body.user_id && first.login.body.token, `passwordless login: ${JSON.stringify(first.login)}`);
    const me = await call(page, 'GET', '/v1/users/@me');
    check(me.status === 200 && me.body.username === username, `the cookie of the passkey login: ${JSON.stringify(me)}`);
    const used = await call(page, 'GET', '/v1/users/@me/passkeys');
    check(used.body[0].last_used_at && used.body[0].name === 'Work laptop', `last use recorded: ${JSON.stringify(used)}`);

    // Replays and tampering are refused.
    const replay = await post('/v1/auth/webauthn/authenticate', { credential: first.credential, challenge_id: first.options.body.challenge_id });
    check(replay.status === 401 && replay.body.code === 'PASSKEY_AUTHENTICATION_FAILED', `replayed assertion: ${JSON.stringify(replay)}`);
    const fresh = await post('/v1/auth/webauthn/authenticate/options', {});
    const replayNew = await post('/v1/auth/webauthn/authenticate', { credential: first.credential, challenge_id: fresh.body.challenge_id });
    check(replayNew.status === 401, `old assertion, new challenge: ${JSON.stringify(replayNew)}`);
    // One challenge, one valid assertion, eight concurrent tries: exactly one session.
    const race = await call(page, 'POST', '/v1/auth/webauthn/authenticate/options');
    const raced = await get(page, race.body.publicKey);
    const tries = await Promise.all(Array.from({ length: 8 }, () =>
      post('/v1/auth/webauthn/authenticate', { credential: raced, challenge_id: race.body.challenge_id })));
    const winners = tries.filter((t) => t.status === 200).length;
    check(winners === 1 && tries.every((t) => t.status === 200 || t.body.code === 'PASSKEY_AUTHENTICATION_FAILED'),
      `one challenge raced 8 times: ${JSON.stringify(tries.map((t) => t.status))}`);
    const second = await call(page, 'POST', '/v1/auth/webauthn/authenticate/options');
    const assertion = await get(page, second.body.publicKey);
    const sig = assertion.response.signature;
    const flipped = (sig[10] === 'A' ? 'B' : 'A');
    const tampered = { ...assertion, response: { ...assertion.response, signature: sig.slice(0, 10) + flipped + sig.slice(11) } };
    const bad = await post('/v1/auth/webauthn/authenticate', { credential: tampered, challenge_id: second.body.challenge_id });
    check(bad.status === 401 && bad.body.code === 'PASSKEY_AUTHENTICATION_FAILED', `tampered signature: ${JSON.stringify(bad)}`);
    const garbage = await post('/v1/auth/webauthn/authenticate', { credential: { id: 'x', garbage: [1, 2] }, challenge_id: 'nope' });
    check(garbage.status === 400 && garbage.body.code === 'INVALID_FORM_BODY', `garbage credential: ${JSON.stringify(garbage)}`);

    // An assertion made on another origin (same RP id) is refused by sigil.
    {
      const { page: foreign, cdp: fcdp, authenticatorId: fid } = await pageWithAuthenticator(browser, `http://localhost:${elsewhere.port}/`);
      await fcdp.send('WebAuthn.addCredential', { authenticatorId: fid, credential: credentials[0] });
      const opts = await post('/v1/auth/webauthn/authenticate/options', {});
      const foreignAssertion = await get(foreign, opts.body.publicKey);
      const wrongOrigin = await post('/v1/auth/webauthn/authenticate', { credential: foreignAssertion, challenge_id: opts.body.challenge_id });
      check(wrongOrigin.status === 401 && wrongOrigin.body.code === 'PASSKEY_AUTHENTICATION_FAILED', `wrong origin: ${JSON.stringify(wrongOrigin)}`);
      // A credential for another RP id (other.test) cannot be registered.
      const { page: otherPage } = await pageWithAuthenticator(browser, `http://other.test:${elsewhere.port}/`);
      const pw = await post('/v1/auth/login', { login: username, password });
      const token = pw.body.token;
      const sudoTok = await post('/v1/auth/sudo/verify', { password }, { authorization: `Bearer ${token}` });
      const regOpts = await post('/v1/users/@me/passkeys/options', {}, { authorization: `Bearer ${token}`, 'x-sudo-token': sudoTok.body.sudo_token });
      check(regOpts.status === 200, `bearer registration options: ${JSON.stringify(regOpts)}`);
      const otherRp = { ...regOpts.body.publicKey, rp: { ...regOpts.body.publicKey.rp, id: 'other.test' } };
      const wrongRpCred = await create(otherPage, otherRp);
      const wrongRp = await post('/v1/users/@me/passkeys', { credential: wrongRpCred }, { authorization: `Bearer ${token}`, 'x-sudo-token': sudoTok.body.sudo_token });
      check(wrongRp.status === 401 && wrongRp.body.code === 'PASSKEY_AUTHENTICATION_FAILED', `wrong RP id: ${JSON.stringify(wrongRp)}`);
    }

    // Passkey as the second factor: with TOTP enrolled the password login asks for one, and
    // lists the passkey among the methods.
    const guid = first.login.body.user_id;
    const totp = await post(`/api/admin/users/${guid}/2fa/totp`, {}, { 'x-internal-secret': secret });
    check(totp.status === 200, `enrol TOTP: ${JSON.stringify(totp)}`);
    const mfa = await post('/v1/auth/login', { login: username, password });
    check(mfa.status === 200 && mfa.body.mfa === true && mfa.body.webauthn === true && mfa.body.methods.includes('webauthn'), `MFA answer: ${JSON.stringify(mfa)}`);
    const mfaOptions = await call(page, 'POST', '/v1/auth/mfa/webauthn/options', { ticket: mfa.body.ticket });
    check(mfaOptions.status === 200 && mfaOptions.body.publicKey.allowCredentials.length === 1, `MFA options: ${JSON.stringify(mfaOptions)}`);
    const mfaAssertion = await get(page, mfaOptions.body.publicKey);
    // One account's MFA challenge serves that ticket only: another ticket cannot use it.
    const otherTicket = await post('/v1/auth/login', { login: username, password });
    const crossed = await post('/v1/auth/mfa/webauthn', { credential: mfaAssertion, ticket: otherTicket.body.ticket });
    check(crossed.status === 401, `assertion for another ticket: ${JSON.stringify(crossed)}`);
    const done = await post('/v1/auth/mfa/webauthn', { credential: mfaAssertion, ticket: mfa.body.ticket });
    check(done.status === 200 && done.body.token && done.body.user_id === guid, `MFA with a passkey: ${JSON.stringify(done)}`);
    const ticketGone = await post('/v1/auth/mfa/webauthn', { credential: mfaAssertion, ticket: mfa.body.ticket });
    check(ticketGone.status >= 400, `ticket used twice: ${JSON.stringify(ticketGone)}`);

    // Hand the credential (with the counter it reached) to `again`, after a kill -9.
    const { credentials: now } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    process.stdout.write(JSON.stringify({ credential: now[0], guid }) + '\n');
  } finally {
    await browser.close();
    elsewhere.server.close();
  }
}

async function againMode(saved, password) {
  const { credential, guid } = JSON.parse(saved);
  const browser = await launch();
  try {
    const { page, cdp, authenticatorId } = await pageWithAuthenticator(browser, `${base}/healthz`);
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
    const { login } = await passwordless(page);
    check(login.status === 200 && login.body.user_id === guid, `passwordless login after the restart: ${JSON.stringify(login)}`);
    // The counter survived too: an authenticator that went back to an older counter (a clone)
    // is refused.
    await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: credential.credentialId });
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...credential, signCount: 0 } });
    const cloned = await passwordless(page);
    check(cloned.login.status === 401, `a credential whose counter went back: ${JSON.stringify(cloned.login)}`);
    // Delete the passkey (sudo): it is gone from the list and logs in no more.
    const sudo = await call(page, 'POST', '/v1/auth/sudo/verify', { password });
    check(sudo.status === 200, `sudo: ${JSON.stringify(sudo)}`);
    const [item] = (await call(page, 'GET', '/v1/users/@me/passkeys')).body;
    const unknown = await call(page, 'DELETE', '/v1/users/@me/passkeys/not-a-passkey');
    check(unknown.status === 404, `delete of an unknown id: ${JSON.stringify(unknown)}`);
    const deleted = await call(page, 'DELETE', `/v1/users/@me/passkeys/${item.id}`);
    check(deleted.status === 204, `delete: ${JSON.stringify(deleted)}`);
    const empty = await call(page, 'GET', '/v1/users/@me/passkeys');
    check(empty.body.length === 0, `list after delete: ${JSON.stringify(empty)}`);
    await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: credential.credentialId });
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...credential, signCount: credential.signCount + 10 } });
    const afterDelete = await passwordless(page);
    check(afterDelete.login.status === 401, `a deleted passkey: ${JSON.stringify(afterDelete.login)}`);
    console.log('ok');
  } finally {
    await browser.close();
  }
}

try {
  if (mode === 'full') await full(...rest);
  else if (mode === 'again') await againMode(rest[0], rest[1]);
  else fail(`unknown mode ${mode}`);
  if (process.env.PASSKEY_TRANSCRIPT) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${process.env.PASSKEY_TRANSCRIPT}.${mode}.json`, JSON.stringify(transcript, null, 2));
  }
} catch (e) {
  fail(e.stack || String(e));
}
