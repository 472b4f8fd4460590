// sigil's own pages in a real browser: headless Chromium (Debian's package) driven by
// playwright-core against the real binary on http://localhost:PORT. Every flow is what a person
// does — type, click, press keys — and the wallets and authenticator apps are independent
// implementations: TOTP codes from node:crypto (RFC 6238), a MetaMask-like EIP-1193 provider
// that signs with ethers, a ZelCore-like wallet that signs with bitcoinjs-message, a CDP
// virtual authenticator for passkeys.
//
// Usage: node pages.mjs BASE INTERNAL_SECRET BTC_KEY_HEX BTC_ADDRESS SHOTS_DIR
// Prints one JSON line of findings; exits non-zero with a message on the first failed check.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import bitcoinMessage from 'bitcoinjs-message';
import { Wallet } from 'ethers';
import { chromium } from 'playwright-core';

const [base, secret, btcKeyHex, btcAddress, shots] = process.argv.slice(2);
const other = base.replace('localhost', '127.0.0.1'); // a second origin, for the OAuth2 client
const findings = {};

function fail(message) {
  console.error(`pages: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

// --- the server, from outside the browser ------------------------------------------------

async function http(method, urlPath, { body, headers = {}, form } = {}) {
  const init = { method, headers: { ...headers }, redirect: 'manual' };
  if (form) {
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
    init.body = new URLSearchParams(form).toString();
  } else if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(base + urlPath, init);
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json, text, headers: res.headers };
}

const admin = (method, urlPath, body) => http(method, urlPath, { body, headers: { 'x-internal-secret': secret } });

// RFC 6238 (SHA-1, 6 digits, 30 s) with node:crypto — independent of sigil's totp-rs.
function totp(base32, offsetSteps = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of base32.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + offsetSteps));
  const mac = crypto.createHmac('sha1', key).update(counter).digest();
  const at = mac[mac.length - 1] & 0xf;
  const n = (mac.readUInt32BE(at) & 0x7fffffff) % 1000000;
  return String(n).padStart(6, '0');
}

// A TOTP code of a step not used yet for this secret (sigil takes each step once per account).
const lastStep = new Map();
async function freshTotp(base32) {
  while (Math.floor(Date.now() / 30000) <= (lastStep.get(base32) || 0)) await new Promise((r) => setTimeout(r, 500));
  lastStep.set(base32, Math.floor(Date.now() / 30000));
  return totp(base32);
}

// --- the browser ----------------------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

const violations = [];
async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) violations.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => violations.push(`${page.url()}: script error ${e.message}`));
  return { context, page };
}

// Desktop and 360 px screenshots of the current page; at 360 px nothing may scroll sideways.
async function shot(page, name) {
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const size = page.viewportSize();
  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  check(overflow <= 360, `${name}: at 360 px the page is ${overflow} px wide`);
  await page.screenshot({ path: path.join(shots, `${name}-360.png`), fullPage: true });
  await page.setViewportSize(size);
}

// Every field of the page has a label (or is hidden).
async function labelled(page, name) {
  const unlabelled = await page.evaluate(() => Array.from(document.querySelectorAll('input:not([type=hidden])'))
    .filter((i) => !(i.labels && i.labels.length) && !i.getAttribute('aria-label'))
    .map((i) => i.id || i.name));
  check(unlabelled.length === 0, `${name}: fields without a label: ${unlabelled}`);
}

async function heading(page) {
  return (await page.locator('h1').first().textContent()).trim();
}

async function addAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
}

try {
  // --- accounts -----------------------------------------------------------------------------
  const tessPassword = 'tess has a long password';
  let r = await admin('POST', '/api/admin/users', { username: 'tess', password: tessPassword, email: 'tess@example.com' });
  check(r.status === 201, `create tess: ${r.status} ${r.text}`);
  const tess = r.body;
  r = await admin('POST', `/api/admin/users/${tess.guid}/2fa/totp`, {});
  check(r.status === 200, `enrol TOTP: ${r.status} ${r.text}`);
  const tessTotp = r.body.secret;
  const recovery = r.body.recovery_codes;
  const ivanPassword = 'ivan has a long password';
  r = await admin('POST', '/api/admin/users', { username: 'ivan', password: ivanPassword, email: 'ivan@example.com' });
  check(r.status === 201, `create ivan: ${r.status}`);
  // Ivan's first login (from 127.0.0.1) makes that his known location.
  r = await http('POST', '/v1/auth/login', { body: { login: 'ivan', password: ivanPassword } });
  check(r.status === 200 && r.body.token, `ivan's first login: ${r.status} ${r.text}`);

  // --- 1. password + TOTP ----------------------------------------------------------------
  const { context: tessContext, page } = await newPage();
  let res = await page.goto(`${base}/login`);
  const csp = res.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes('unsafe-inline'), `CSP: ${csp}`);
  check(res.headers()['x-frame-options'] === 'DENY', 'X-Frame-Options');
  await labelled(page, 'login');
  check(await page.locator('#elsewhere').isHidden(), 'no address warning at the public URL');
  await shot(page, 'login');
  await page.fill('#login', 'tess');
  await page.fill('#password', 'not the password');
  await page.click('#password-form button[type=submit]');
  check((await page.locator('#form-error').textContent()).includes('not right'), 'a wrong password is said in plain words');
  check(!(await page.content()).includes('INVALID_CREDENTIALS'), 'no error codes on the page');
  await page.fill('#password', tessPassword);
  await page.click('#password-form button[type=submit]');
  check((await heading(page)) === 'Two-step verification', `after the password: ${await heading(page)}`);
  await labelled(page, 'mfa');
  await shot(page, 'mfa');
  await page.fill('#code', '000000');
  await page.click('form[action="/login/mfa"] button[type=submit]');
  check((await page.locator('#form-error').textContent()).includes('code is not right'), 'a wrong code is said in plain words');
  await page.fill('#code', await freshTotp(tessTotp));
  await page.click('form[action="/login/mfa"] button[type=submit]');
  await page.waitForURL(`${base}/account`);
  check((await page.locator('#username').textContent()) === 'tess', 'signed in as tess');
  const cookies = await tessContext.cookies();
  const session = cookies.find((c) => c.name === 'sigil_session');
  check(session && session.httpOnly && session.sameSite === 'Lax', `session cookie: ${JSON.stringify(session)}`);
  await labelled(page, 'account');
  await shot(page, 'account');
  findings.password_totp = 'ok';

  // --- 2. a passkey: added from /account (sudo prompt), then a passwordless sign-in ---------
  await addAuthenticator(tessContext, page);
  await page.click('#add-passkey');
  await page.waitForSelector('#sudo[open]');
  await shot(page, 'account-sudo');
  await page.fill('#sudo-password', tessPassword);
  await page.click('#sudo-form button[value=confirm]');
  await page.waitForSelector('#passkeys li');
  check((await page.locator('#passkeys li').count()) === 1, 'one passkey listed');
  await page.click('#sign-out');
  await page.waitForURL(`${base}/login`);
  await page.waitForSelector('#passkey:not([hidden])');
  await page.click('#passkey');
  await page.waitForURL(`${base}/account`);
  check((await page.locator('#username').textContent()) === 'tess', 'passkey sign-in as tess');
  findings.passkey = 'ok';

  // --- 3. session revocation from /account --------------------------------------------------
  r = await http('POST', '/v1/auth/login', { body: { login: 'tess', password: tessPassword } });
  check(r.body && r.body.mfa, `API login asks for MFA: ${r.text}`);
  r = await http('POST', '/v1/auth/mfa/totp', { body: { ticket: r.body.ticket, code: recovery[0] } });
  check(r.status === 200 && r.body.token, `recovery code login: ${r.status} ${r.text}`);
  const otherToken = r.body.token;
  r = await http('GET', '/v1/users/@me', { headers: { authorization: `Bearer ${otherToken}` } });
  check(r.status === 200, 'the other session works before');
  await page.reload();
  check((await page.locator('.end-session').count()) === 1, 'the other session is listed with a sign-out button');
  await page.click('.end-session');
  await page.waitForSelector('#sudo[open]');
  await page.fill('#sudo-password', tessPassword);
  await page.click('#sudo-form button[value=confirm]');
  await page.waitForFunction(() => document.querySelectorAll('.end-session').length === 0);
  r = await http('GET', '/v1/users/@me', { headers: { authorization: `Bearer ${otherToken}` } });
  check(r.status === 401, `the revoked session answers ${r.status}`);
  findings.revocation = 'ok';

  // Opened at another address of the same server, the page says where to sign in instead.
  {
    const { context, page: stray } = await newPage();
    await stray.goto(`${other}/login`);
    check(await stray.locator('#elsewhere').isVisible(), 'opened at another origin, the page warns');
    check((await stray.locator('#elsewhere a').getAttribute('href')) === `${base}/login`, 'and links to the public URL');
    await context.close();
  }

  // --- 4. OAuth2 consent --------------------------------------------------------------------
  const redirect = `${other}/callback`;
  r = await admin('POST', '/v1/oauth2/applications', { name: 'Photo Album', redirect_uris: [redirect], confidential: true, scopes: ['openid', 'identify', 'email'] });
  check(r.status === 201, `register client: ${r.status} ${r.text}`);
  const client = r.body;
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const authorize = (state) => `${base}/v1/oauth2/authorize?` + new URLSearchParams({
    client_id: client.client_id, redirect_uri: redirect, response_type: 'code', scope: 'openid identify email',
    state, code_challenge: challenge, code_challenge_method: 'S256', nonce: 'n-0S6_WzA2Mj',
  });
  await page.goto(authorize('s-tess'));
  check((await page.locator('#client-name').textContent()) === 'Photo Album', 'the consent page names the client');
  await shot(page, 'consent');
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(redirect)), page.click('#allow')]);
  const back = new URL(page.url());
  check(back.searchParams.get('state') === 's-tess' && back.searchParams.get('code'), `back at the client: ${page.url()}`);
  r = await http('POST', '/v1/oauth2/token', { form: {
    grant_type: 'authorization_code', code: back.searchParams.get('code'), redirect_uri: redirect,
    client_id: client.client_id, client_secret: client.client_secret, code_verifier: verifier,
  } });
  check(r.status === 200 && r.body.access_token && r.body.id_token, `token exchange: ${r.status} ${r.text}`);
  r = await http('GET', '/v1/oauth2/userinfo', { headers: { authorization: `Bearer ${r.body.access_token}` } });
  check(r.status === 200 && r.body.username === 'tess', `userinfo: ${r.text}`);
  findings.consent = 'ok';

  // --- 5. handoff approval ------------------------------------------------------------------
  r = await http('POST', '/v1/auth/handoff/initiate');
  check(r.status === 200, `handoff initiate: ${r.status}`);
  const handoff = r.body;
  await page.goto(`${base}/handoff?code=${handoff.code}`);
  await labelled(page, 'handoff');
  await shot(page, 'handoff');
  await page.click('form[action="/handoff"] button[type=submit]');
  check((await heading(page)) === 'App signed in', `after the handoff: ${await heading(page)}`);
  r = await http('GET', `/v1/auth/handoff/${handoff.code}/status`, { headers: { 'x-handoff-secret': handoff.poll_secret } });
  check(r.body && r.body.status === 'completed' && r.body.token, `handoff status: ${r.text}`);
  findings.handoff = 'ok';
  await tessContext.close();

  // --- 6. a new location, keyboard only, coming from an OAuth2 client -----------------------
  // Ivan's browser is behind a proxy sigil trusts, at an address he never used.
  const { context: ivanContext, page: ivan } = await newPage({ extraHTTPHeaders: { 'x-forwarded-for': '203.0.113.7' } });
  await ivan.goto(authorize('s-ivan'));
  check(new URL(ivan.url()).pathname === '/login', `signed out, the authorize URL leads to /login: ${ivan.url()}`);
  await ivan.keyboard.type('ivan'); // the login field has the focus
  await ivan.keyboard.press('Tab');
  await ivan.keyboard.type(ivanPassword);
  await ivan.keyboard.press('Tab');
  const focus = await ivan.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return { tag: el.tagName, text: el.textContent.trim(), outline: style.outlineStyle, width: style.outlineWidth };
  });
  check(focus.tag === 'BUTTON' && focus.text === 'Sign in', `Tab reaches the sign-in button: ${JSON.stringify(focus)}`);
  check(focus.outline !== 'none' && focus.width !== '0px', `the focused button shows its focus: ${JSON.stringify(focus)}`);
  await ivan.keyboard.press('Enter');
  await ivan.waitForSelector('#ip-form');
  check((await heading(ivan)) === 'Approve this location', `new location: ${await heading(ivan)}`);
  await shot(ivan, 'ip-wait');
  r = await admin('GET', '/api/admin/outbox?to=ivan%40example.com');
  const message = r.body && r.body.filter((m) => m.purpose === 'ip-authorization').pop();
  check(message, `the approval message went out: ${r.text}`);
  const link = (message.body.match(/https?:\/\/\S+\/authorize-ip\?code=\S+/) || [""])[0];
  check(link.includes('/authorize-ip?code='), `the message links to the landing page: ${message.body}`);
  // The link opens on another device (another browser, another address).
  const { context: phone, page: landing } = await newPage({ viewport: { width: 360, height: 740 } });
  await landing.goto(link);
  await labelled(landing, 'authorize-ip');
  await shot(landing, 'authorize-ip');
  await landing.click('form[action="/authorize-ip"] button[type=submit]');
  check((await heading(landing)) === 'Location approved', `landing page after approval: ${await heading(landing)}`);
  await phone.close();
  // The waiting page moves on by itself (websocket) — back to the client's consent page.
  await ivan.waitForSelector('#client-name', { timeout: 10000 });
  await Promise.all([ivan.waitForURL((u) => u.toString().startsWith(redirect)), ivan.click('#deny')]);
  check(new URL(ivan.url()).searchParams.get('error') === 'access_denied', `denied: ${ivan.url()}`);
  findings.new_location = 'ok';
  await ivanContext.close();

  // --- 7. without JavaScript: the password login still works --------------------------------
  const { context: plain, page: nojs } = await newPage({ javaScriptEnabled: false });
  await nojs.goto(`${base}/login`);
  await nojs.fill('#login', 'ivan');
  await nojs.fill('#password', ivanPassword);
  await nojs.click('#password-form button[type=submit]');
  await nojs.waitForURL(`${base}/account`);
  check((await nojs.locator('#username').textContent()) === 'ivan', 'signed in without JavaScript');
  await nojs.click('#sign-out');
  await nojs.waitForURL(`${base}/login`);
  findings.no_javascript = 'ok';
  await plain.close();

  // --- 7b. SMS as the second factor: "Text me a code", the code from the outbox ---------
  r = await admin('POST', '/api/admin/users', { username: 'sam', password: 'sam has a long password', phone: '+15550100' });
  check(r.status === 201, `create sam: ${r.status} ${r.text}`);
  r = await admin('PATCH', `/api/admin/users/${r.body.guid}`, { default_2fa: 'sms' });
  check(r.status === 200, `sam's default second factor: ${r.status} ${r.text}`);
  {
    const { context, page: sms } = await newPage();
    await sms.goto(`${base}/login`);
    await sms.fill('#login', 'sam');
    await sms.fill('#password', 'sam has a long password');
    await sms.click('#password-form button[type=submit]');
    check((await heading(sms)) === 'Two-step verification', `sam's second step: ${await heading(sms)}`);
    await sms.click('form[action="/login/mfa/sms"] button[type=submit]');
    check((await sms.locator('.notice').textContent()).includes('sent a code'), 'the page says the code went out');
    await labelled(sms, 'mfa-sms');
    await shot(sms, 'mfa-sms');
    r = await admin('GET', '/api/admin/outbox?to=%2B15550100');
    const text = r.body && r.body.filter((m) => m.purpose === '2fa').pop();
    check(text && text.code, `the SMS went out: ${r.text}`);
    await sms.fill('#sms-code', text.code);
    await sms.click('form[action="/login/mfa"] input[value=sms] ~ button[type=submit]');
    await sms.waitForURL(`${base}/account`);
    check((await sms.locator('#username').textContent()) === 'sam', 'signed in with the SMS code');
    findings.sms = 'ok';
    await context.close();
  }

  // --- 8. TOTP enrolment from /account: scan (read the key), type the code, confirm -------
  const { context: enrol, page: me } = await newPage();
  await me.goto(`${base}/login?return_to=%2Faccount`);
  await me.fill('#login', 'ivan');
  await me.fill('#password', ivanPassword);
  await me.click('#password-form button[type=submit]');
  await me.waitForURL(`${base}/account`);
  check(await me.locator('.qr svg').count() === 1, 'the enrolment QR code is on the page');
  await shot(me, 'account-totp');
  const ivanTotp = (await me.locator('#totp-secret').textContent()).trim();
  await me.fill('#enable-code', await freshTotp(ivanTotp));
  await me.click('#totp-enable button[type=submit]');
  await me.waitForSelector('#sudo[open]');
  await me.fill('#sudo-password', ivanPassword);
  await me.click('#sudo-form button[value=confirm]');
  await me.waitForSelector('#recovery:not([hidden])');
  check((await me.locator('#recovery-codes li').count()) === 10, 'ten recovery codes shown');
  r = await http('POST', '/v1/auth/login', { body: { login: 'ivan', password: ivanPassword } });
  check(r.body && r.body.mfa && r.body.methods.includes('totp'), `ivan's password login now asks for TOTP: ${r.text}`);
  findings.totp_enrolment = 'ok';
  await enrol.close();

  // --- 9. wallet: MetaMask (an EIP-1193 provider signing with ethers) -----------------------
  const eth = Wallet.createRandom();
  const { context: mm, page: wallet } = await newPage();
  await wallet.exposeFunction('__testWalletSign', async (hex) => eth.signMessage(Buffer.from(hex.slice(2), 'hex')));
  await wallet.addInitScript((address) => {
    window.ethereum = {
      isMetaMask: true,
      async request({ method, params }) {
        if (method === 'eth_requestAccounts') return [address];
        if (method === 'personal_sign') return window.__testWalletSign(params[0]);
        throw Object.assign(new Error('unsupported'), { code: 4200 });
      },
    };
  }, eth.address);
  await wallet.goto(`${base}/login`);
  await wallet.click('#wallet');
  await wallet.waitForURL((u) => u.pathname === '/login/wallet');
  await shot(wallet, 'wallet');
  await wallet.click('#metamask');
  await wallet.waitForURL(`${base}/account`, { timeout: 10000 });
  check((await wallet.locator('#username').textContent()).toLowerCase() === eth.address.toLowerCase(), 'signed in as the Ethereum address');
  findings.wallet_metamask = 'ok';
  await mm.close();

  // --- 10. wallet: ZelCore (the phone signs the phrase shown, and posts it) -------------------
  const { context: zc, page: zel } = await newPage();
  await zel.goto(`${base}/login/wallet`);
  const phrase = (await zel.locator('#phrase').textContent()).trim();
  const deep = await zel.locator('#zel').getAttribute('href');
  check(deep.startsWith('zel:?action=sign&message=' + encodeURIComponent(phrase).replace(/%20/g, '+')), `deep link: ${deep}`);
  const signature = bitcoinMessage.sign(phrase, Buffer.from(btcKeyHex, 'hex'), true).toString('base64');
  const posted = Date.now();
  r = await http('POST', '/id/verifylogin', { body: { zelid: btcAddress, signature, loginPhrase: phrase } });
  check(r.body && r.body.status === 'success', `verifylogin: ${r.text}`);
  await zel.waitForURL(`${base}/account`, { timeout: 10000 });
  findings.wallet_zelcore_ms_to_account_page = Date.now() - posted;
  check((await zel.locator('#username').textContent()) === btcAddress, 'signed in as the Bitcoin address');
  findings.wallet_zelcore = 'ok';
  await zc.close();

  // --- 11. nothing may break the policy --------------------------------------------------
  check(violations.length === 0, `CSP violations or script errors:\n${violations.join('\n')}`);
  console.log(JSON.stringify(findings));
} finally {
  await browser.close();
}
