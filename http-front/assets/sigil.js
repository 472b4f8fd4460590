// sigil's pages: the shared helpers. Plain JavaScript, no build step, no other origin.
'use strict';

(function () {
  // What an API error code means, in words for the person at the screen.
  const WORDS = {
    UNAUTHORIZED: 'Your session has ended. Please sign in again.',
    INVALID_CREDENTIALS: 'That username or password is not right.',
    ACCOUNT_DISABLED: 'This account may not sign in. Ask your administrator.',
    MFA_INVALID_TICKET: 'This sign-in has expired. Please start again.',
    INVALID_CODE: 'That code is not right. Check it and try again.',
    SUDO_MODE_REQUIRED: 'Please confirm your password first.',
    INVALID_HANDOFF_CODE: 'That code is not known.',
    HANDOFF_CODE_EXPIRED: 'That code has expired.',
    PASSKEY_AUTHENTICATION_FAILED: 'The passkey could not be verified.',
    RATE_LIMITED: 'Too many attempts. Please wait a moment and try again.',
    INVALID_FORM_BODY: 'Please check what you typed.',
    INVALID_ORIGIN: 'This request came from another site and was refused.',
    UNAVAILABLE: 'The service is busy or unavailable. Please try again in a moment.',
  };

  function words(data, status) {
    if (data && WORDS[data.code]) return WORDS[data.code];
    if (status === 429) return WORDS.RATE_LIMITED;
    return 'Something went wrong. Please try again.';
  }

  // A JSON call to sigil's own API (cookies included). Resolves to the parsed body (or null);
  // rejects with an Error whose message is plain words and whose `code` is the API's.
  async function api(path, body, method) {
    const init = { method: method || 'POST', credentials: 'same-origin', headers: { accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      const err = new Error('Could not reach the server. Check your connection and try again.');
      err.code = 'NETWORK';
      throw err;
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!response.ok) {
      const err = new Error(words(data, response.status));
      err.code = data && data.code;
      err.status = response.status;
      throw err;
    }
    return data;
  }

  // Shows `text` in the page's live status line (an error in red).
  function say(text, isError) {
    const el = document.getElementById('status');
    if (!el) return;
    el.textContent = text;
    el.classList.toggle('error', !!isError);
  }

  // WebAuthn Level 3 JSON helpers (what sigil's options calls answer and verify calls take).
  const passkeysWork = !!(window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON &&
    PublicKeyCredential.parseCreationOptionsFromJSON);

  async function getPasskey(options) {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
    const credential = await navigator.credentials.get({ publicKey });
    return credential.toJSON();
  }

  async function createPasskey(options) {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
    const credential = await navigator.credentials.create({ publicKey });
    return credential.toJSON();
  }

  // A cancelled passkey prompt is not an error worth shouting about.
  function passkeyTrouble(e) {
    if (e && e.name === 'NotAllowedError') return 'The passkey prompt was closed. Try again when you are ready.';
    return (e && e.code) ? e.message : 'The passkey could not be used on this device.';
  }

  window.sigil = { api, say, passkeysWork, getPasskey, createPasskey, passkeyTrouble };
})();
