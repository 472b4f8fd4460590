// /account: every change is a /v1 call; the ones that need sudo mode ask for the password
// (or an authenticator code) once, then go on.
'use strict';

(function () {
  const { api, say, passkeysWork, createPasskey, passkeyTrouble } = window.sigil;
  const dialog = document.getElementById('sudo');
  const sudoForm = document.getElementById('sudo-form');
  const sudoError = document.getElementById('sudo-error');

  // Resolves once the person confirmed (sudo mode granted), rejects if they cancel.
  function confirmIdentity() {
    return new Promise((resolve, reject) => {
      sudoError.hidden = true;
      sudoForm.reset();
      const cancel = () => { cleanup(); dialog.close(); reject(new Error('Cancelled.')); };
      const submit = async (event) => {
        event.preventDefault();
        const password = document.getElementById('sudo-password').value;
        const code = document.getElementById('sudo-code').value.trim();
        const proof = password ? { password } : { mfa_method: /^[0-9a-f]{32}$/i.test(code.replace(/[\s-]/g, '')) ? 'recovery' : 'totp', code };
        try {
          await api('/v1/auth/sudo/verify', proof);
          cleanup();
          dialog.close();
          resolve();
        } catch (e) {
          sudoError.textContent = e.code === 'INVALID_CREDENTIALS' ? 'That password is not right.' : e.message;
          sudoError.hidden = false;
        }
      };
      const cleanup = () => {
        sudoForm.removeEventListener('submit', submit);
        document.getElementById('sudo-cancel').removeEventListener('click', cancel);
        dialog.removeEventListener('cancel', cancel);
      };
      sudoForm.addEventListener('submit', submit);
      document.getElementById('sudo-cancel').addEventListener('click', cancel);
      dialog.addEventListener('cancel', cancel);
      dialog.showModal();
    });
  }

  // Runs `call`; if sudo mode is needed, asks, then runs it again.
  async function withSudo(call) {
    try {
      return await call();
    } catch (e) {
      if (e.code !== 'SUDO_MODE_REQUIRED') throw e;
      await confirmIdentity();
      return call();
    }
  }

  for (const button of document.querySelectorAll('.end-session')) {
    button.addEventListener('click', async () => {
      const id = button.dataset.sessionId;
      try {
        await withSudo(() => api('/v1/auth/sessions/logout', { session_ids: [id] }));
        const row = button.closest('li');
        if (row) row.remove();
        say('That device is signed out.');
      } catch (e) {
        if (e.message !== 'Cancelled.') say(e.message, true);
      }
    });
  }

  const add = document.getElementById('add-passkey');
  if (add && passkeysWork) {
    add.hidden = false;
    add.addEventListener('click', async () => {
      add.disabled = true;
      try {
        const options = await withSudo(() => api('/v1/users/@me/passkeys/options'));
        say('Follow your browser\'s prompt to create the passkey…');
        const credential = await createPasskey(options);
        await api('/v1/users/@me/passkeys', { credential, name: 'Passkey on ' + (navigator.platform || 'this device') });
        say('Passkey added.');
        window.location.reload();
      } catch (e) {
        if (e.message !== 'Cancelled.') say(e.code ? e.message : passkeyTrouble(e), true);
      } finally {
        add.disabled = false;
      }
    });
  }

  for (const button of document.querySelectorAll('.remove-passkey')) {
    button.addEventListener('click', async () => {
      try {
        await withSudo(() => api('/v1/users/@me/passkeys/' + encodeURIComponent(button.dataset.passkeyId), undefined, 'DELETE'));
        say('Passkey removed.');
        window.location.reload();
      } catch (e) {
        if (e.message !== 'Cancelled.') say(e.message, true);
      }
    });
  }

  const enable = document.getElementById('totp-enable');
  if (enable) {
    enable.addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        const code = enable.elements.code.value;
        const answer = await withSudo(() => api('/v1/users/@me/mfa/totp/enable', { secret: enable.dataset.secret, code }));
        const list = document.getElementById('recovery-codes');
        list.replaceChildren(...answer.recovery_codes.map((c) => {
          const li = document.createElement('li');
          li.textContent = c;
          return li;
        }));
        document.getElementById('recovery').hidden = false;
        enable.hidden = true;
        say('Two-step verification is on. Save your recovery codes now.');
      } catch (e) {
        if (e.message !== 'Cancelled.') say(e.message, true);
      }
    });
  }

  const disable = document.getElementById('totp-disable');
  if (disable) {
    disable.addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await withSudo(() => api('/v1/users/@me/mfa/totp/disable', { code: disable.elements.code.value }));
        window.location.reload();
      } catch (e) {
        if (e.message !== 'Cancelled.') say(e.message, true);
      }
    });
  }
})();
