// /login/wallet: wait on /ws/id/{phrase} for the wallet's signature (pushed the instant it is
// verified), then finish the sign-in. MetaMask signs in this browser through window.ethereum.
'use strict';

(function () {
  const { say } = window.sigil;
  const finish = document.getElementById('finish');
  if (!finish) return;
  const phrase = finish.dataset.phrase;
  let done = false;
  let attempts = 0;

  function listen() {
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${window.location.host}/ws/id/${encodeURIComponent(phrase)}`);
    socket.addEventListener('message', (event) => {
      // FluxOS frames are query strings: status=success&data[zelid]=…&data[signature]=…
      const frame = new URLSearchParams(event.data);
      if (frame.get('status') !== 'success') {
        done = true;
        say(frame.get('data[message]') || 'This message is no longer valid. Reload the page for a new one.', true);
        return;
      }
      const signature = frame.get('data[signature]');
      if (!signature) {
        done = true;
        say('The signature arrived too late. Reload the page and sign again.', true);
        return;
      }
      done = true;
      say('Signature verified. Signing you in…');
      finish.elements.zelid.value = frame.get('data[zelid]');
      finish.elements.signature.value = signature;
      finish.elements.loginPhrase.value = frame.get('data[loginPhrase]') || phrase;
      finish.submit();
    });
    socket.addEventListener('close', () => {
      if (done) return;
      attempts += 1;
      if (attempts <= 5) {
        window.setTimeout(listen, 500 * attempts);
      } else {
        say('Lost the connection to the server. Reload the page to try again.', true);
      }
    });
  }
  listen();

  // MetaMask (or any EIP-1193 wallet in this browser): personal_sign over the phrase's UTF-8
  // bytes, posted to /id/verifylogin like every FluxOS client does.
  const metamask = document.getElementById('metamask');
  if (metamask && window.ethereum && typeof window.ethereum.request === 'function') {
    metamask.hidden = false;
    metamask.addEventListener('click', async () => {
      metamask.disabled = true;
      say('Confirm the signature in your wallet…');
      try {
        const accounts = await window.ethereum.request({ method: 'eth_requestAccounts' });
        const address = accounts && accounts[0];
        if (!address) throw new Error('The wallet shared no address.');
        const hex = '0x' + Array.from(new TextEncoder().encode(phrase), (b) => b.toString(16).padStart(2, '0')).join('');
        const signature = await window.ethereum.request({ method: 'personal_sign', params: [hex, address] });
        const response = await fetch('/id/verifylogin', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ zelid: address, signature, loginPhrase: phrase }),
        });
        const body = await response.json().catch(() => null);
        if (!body || body.status !== 'success') {
          throw new Error((body && body.data && body.data.message) || 'The signature was not accepted.');
        }
        say('Signature verified. Signing you in…');
      } catch (e) {
        say((e && e.code === 4001) ? 'You declined the signature in your wallet.' : (e.message || 'The wallet could not sign.'), true);
        metamask.disabled = false;
      }
    });
  }
})();
