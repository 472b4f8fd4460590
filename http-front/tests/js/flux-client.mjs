// A FluxOS-style client, written only with the libraries FluxOS's own clients use:
// bitcoinjs-message (ZelCore/SSP-style Bitcoin signatures), ethers (MetaMask personal_sign)
// and a plain websocket. It logs in to sigil the way the Flux web UI does and checks what
// comes back. Usage: node flux-client.mjs BASE_URL BTC_PRIVKEY_HEX BTC_ADDRESS ETH_PRIVKEY_HEX
import bitcoinMessage from 'bitcoinjs-message';
import { Wallet } from 'ethers';
import WebSocket from 'ws';

const [base, btcKeyHex, btcAddress, ethKeyHex] = process.argv.slice(2);
const wsBase = base.replace(/^http/, 'ws');

function fail(message) {
  console.error(`flux-client: ${message}`);
  process.exit(1);
}

async function getJson(path, headers = {}) {
  const res = await fetch(base + path, { headers });
  if (res.status !== 200) fail(`${path}: HTTP ${res.status}`);
  return res.json();
}

// Opens /ws/id/{phrase}; `ready` resolves once it is open, `pushed` with the first frame and
// the close code.
function subscribe(phrase) {
  const ws = new WebSocket(`${wsBase}/ws/id/${phrase}`);
  const ready = new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  const pushed = new Promise((resolve, reject) => {
    let frame = null;
    const timer = setTimeout(() => reject(new Error('no push within 10 s')), 10000);
    ws.on('message', (data) => { frame = data.toString(); });
    ws.on('close', (code) => { clearTimeout(timer); resolve({ frame, code }); });
  });
  return { ready, pushed };
}

async function login(kind, zelid, sign, encode) {
  const phraseReply = await getJson('/id/loginphrase');
  if (phraseReply.status !== 'success') fail(`loginphrase: ${JSON.stringify(phraseReply)}`);
  const phrase = phraseReply.data;
  const { ready, pushed } = subscribe(phrase);
  await ready;

  const signature = await sign(phrase);
  const fields = { zelid, loginPhrase: phrase, signature };
  const [contentType, body] = encode(fields);
  const res = await fetch(`${base}/id/verifylogin`, { method: 'POST', headers: { 'content-type': contentType }, body });
  const reply = await res.json();
  if (reply.status !== 'success') fail(`${kind} verifylogin: ${JSON.stringify(reply)}`);
  if (reply.data.privilage !== 'user') fail(`${kind}: privilage ${reply.data.privilage}`);

  const { frame, code } = await pushed;
  const data = new URLSearchParams(frame ?? '');
  if (data.get('status') !== 'success' || data.get('data[zelid]') !== zelid || data.get('data[signature]') !== signature) {
    fail(`${kind} websocket frame: ${frame}`);
  }
  if (code !== 4012) fail(`${kind} websocket close code ${code}`);

  // The web UI keeps the login as a query string and sends it as the zelidauth header.
  const zelidauth = new URLSearchParams(fields).toString();
  const sessions = await getJson(`/id/loggedsessions?timestamp=${Date.now()}`, { zelidauth });
  if (sessions.status !== 'success' || sessions.data[0]?.loginPhrase !== phrase) {
    fail(`${kind} loggedsessions: ${JSON.stringify(sessions)}`);
  }
  return { kind, zelid, phrase, closeCode: code };
}

const results = [];

// Bitcoin: ZelCore/SSP sign with bitcoinjs-message (compressed key), posted as text/plain JSON.
const btcKey = Buffer.from(btcKeyHex, 'hex');
results.push(await login(
  'bitcoinjs-message',
  btcAddress,
  async (phrase) => {
    const sig = bitcoinMessage.sign(phrase, btcKey, true).toString('base64');
    if (!bitcoinMessage.verify(phrase, btcAddress, sig)) fail('bitcoinjs-message cannot verify its own signature');
    return sig;
  },
  (fields) => ['text/plain', JSON.stringify(fields)],
));

// Ethereum: MetaMask-style personal_sign through ethers, posted form-encoded like the web UI.
const eth = new Wallet(`0x${ethKeyHex}`);
results.push(await login(
  'ethers',
  eth.address,
  (phrase) => eth.signMessage(phrase),
  (fields) => ['application/x-www-form-urlencoded', new URLSearchParams(fields).toString()],
));

console.log(JSON.stringify(results));
