// /login and its second steps: passkey sign-in, passkey as second factor, and the wait for a
// new-location approval (pushed over a websocket).
'use strict';

(function () {
  const { api, say, passkeysWork, getPasskey, passkeyTrouble } = window.sigil;

  // Opened at an address sigil does not take forms from (localhost while accounts.public_url
  // says 127.0.0.1, say): say where to go, rather than let the sign-in be refused.
  const elsewhere = document.getElementById('elsewhere');
  if (elsewhere && !elsewhere.dataset.origins.split(' ').includes(window.location.origin)) {
    elsewhere.hidden = false;
  }

  // Passwordless passkey sign-in (discoverable credentials).
  const passkey = document.getElementById('passkey');
  if (passkey && passkeysWork) {
    passkey.hidden = false;
    passkey.addEventListener('click', async () => {
      passkey.disabled = true;
      say('Waiting for your passkey…');
      try {
        const options = await api('/v1/auth/webauthn/authenticate/options');
        const credential = await getPasskey(options);
        await api('/v1/auth/webauthn/authenticate', { credential, challenge_id: options.challenge_id });
        say('Signed in.');
        window.location.assign(passkey.dataset.returnTo || '/account');
      } catch (e) {
        say(passkeyTrouble(e), true);
        passkey.disabled = false;
      }
    });
  }

  // A passkey as the second factor of a password sign-in.
  const second = document.getElementById('mfa-passkey');
  if (second && passkeysWork) {
    second.hidden = false;
    second.addEventListener('click', async () => {
      second.disabled = true;
      say('Waiting for your passkey…');
      try {
        const ticket = second.dataset.ticket;
        const options = await api('/v1/auth/mfa/webauthn/options', { ticket });
        const credential = await getPasskey(options);
        await api('/v1/auth/mfa/webauthn', { credential, ticket });
        say('Signed in.');
        window.location.assign(second.dataset.returnTo || '/account');
      } catch (e) {
        say(passkeyTrouble(e), true);
        second.disabled = false;
      }
    });
  }

  // New location: the approval may come from a link opened on another device. The websocket
  // hands this page its session the moment it is approved; the page turns it into the cookie.
  const ipForm = document.getElementById('ip-form');
  const adopt = document.getElementById('adopt');
  if (ipForm && adopt) {
    const ticket = ipForm.dataset.ticket;
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${window.location.host}/v1/auth/authorize-ip/ws?ticket=${encodeURIComponent(ticket)}`);
    let open = false;
    socket.addEventListener('open', () => { open = true; });
    socket.addEventListener('message', (event) => {
      let data = null;
      try { data = JSON.parse(event.data); } catch (e) { data = null; }
      if (data && data.completed && data.token) {
        say('Approved. Signing you in…');
        adopt.elements.token.value = data.token;
        adopt.submit();
      } else if (data && data.code) {
        say('This sign-in has expired. Please start again.', true);
      }
    });
    socket.addEventListener('close', () => { open = false; });
    // With the socket listening, typing the code here only approves; the socket signs in.
    ipForm.addEventListener('submit', async (event) => {
      if (!open) return; // no socket: the form does it all
      event.preventDefault();
      try {
        await api('/v1/auth/authorize-ip', { code: ipForm.elements.code.value });
        say('Approved. Signing you in…');
      } catch (e) {
        say(e.message, true);
      }
    });
  }
})();
