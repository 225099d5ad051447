// The sign-in form: an admin token (or the master key) exchanged for a
// session cookie. The token is sent once and not kept.

import {signIn} from './api.js';
import {field, h, notice, replace} from './dom.js';

export function signInPage(root, signedIn) {
  document.title = 'Sign in · llmhost console';
  const token = h('input', {type: 'password', autocomplete: 'current-password', required: true,
    spellcheck: 'false', testid: 'signin-token'});
  const message = h('div', {class: 'message', 'aria-live': 'polite', testid: 'signin-message'});
  const submit = h('button', {type: 'submit', testid: 'signin-submit'}, 'Sign in');
  const form = h('form', {class: 'card signin', testid: 'signin-form', on: {submit: async (event) => {
    event.preventDefault();
    replace(message);
    submit.disabled = true;
    const value = token.value;
    token.value = '';
    try {
      signedIn(await signIn(value));
    } catch (error) {
      const text = error.status === 401 || error.status === 403
        ? 'Sign-in failed: that token is not valid.'
        : `Sign-in failed: ${error.message}`;
      replace(message, notice('error', text));
      submit.disabled = false;
      token.focus();
    }
  }}},
  h('h1', {}, h('span', {class: 'logo', 'aria-hidden': 'true'}), 'llmhost console'),
  h('p', {class: 'hint'}, 'Sign in with an admin token (', h('code', {}, 'llmhost admin-tokens create NAME'),
    ') or the gateway\'s master key.'),
  field('Admin token', token, {name: 'token'}),
  submit,
  message);
  replace(root, h('main', {id: 'main', class: 'signin-page'}, form));
  token.focus();
}
