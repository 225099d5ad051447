// Virtual keys: the list with each key's spend against its budget, a form
// to create one, and revocation. A created key is shown once: it lives in
// one DOM node and this closure, and is dropped on "Done", on leaving the
// page and on reload; it is never written to storage.

import {admin, del, get, post, seg} from './api.js';
import {confirmButton} from './agents.js';
import {clearErrors, field, fieldError, h, notice, replace, select, table} from './dom.js';
import {count, usd, when} from './format.js';

const PERIODS = [['day', 'Day'], ['week', 'Week'], ['month', 'Month'], ['total', 'In total']];
const EXPIRIES = [['', 'Never'], [String(86400), '1 day'], [String(7 * 86400), '7 days'],
  [String(30 * 86400), '30 days'], [String(90 * 86400), '90 days']];

function budgetBar(key) {
  const budget = key.budget_usd === null || key.budget_usd === undefined ? null : Number(key.budget_usd);
  const spent = key.spend ? Number(key.spend.spent_usd) || 0 : 0;
  if (budget === null) return h('span', {class: 'muted', testid: `key-budget-${key.name}`}, `${usd(spent)} spent, no budget`);
  const share = budget > 0 ? Math.min(spent / budget, 1) : 1;
  const fill = h('span', {class: share >= 1 ? 'fill over' : share >= 0.8 ? 'fill warn' : 'fill'});
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return h('div', {class: 'budget', testid: `key-budget-${key.name}`},
    h('div', {class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': budget, 'aria-valuenow': spent,
      'aria-label': `${key.name} spend`}, fill),
    h('span', {class: 'budget-text'}, `${usd(spent)} of ${usd(budget)} per ${key.budget_period || 'month'}`));
}

export async function keysPage(main) {
  let secret = null;
  const list = h('div', {testid: 'keys-list'});
  const created = h('div', {'aria-live': 'polite', testid: 'key-created-slot'});
  const message = h('div', {'aria-live': 'polite'});
  const name = h('input', {type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', testid: 'key-name'});
  const agents = await get(admin('/agents')).then((answer) => answer.agents || []).catch(() => []);
  const agent = select([['', 'Any route'], ...agents.map((item) => [item.name, `agent:${item.name}`])], '',
    {testid: 'key-agent'});
  const models = h('input', {type: 'text', autocomplete: 'off', spellcheck: 'false', testid: 'key-models',
    placeholder: 'openai/gpt-4o-mini, claude/*'});
  const budget = h('input', {type: 'text', inputmode: 'decimal', autocomplete: 'off', testid: 'key-budget'});
  const period = select(PERIODS, 'month', {testid: 'key-period'});
  const rpm = h('input', {type: 'text', inputmode: 'numeric', autocomplete: 'off', testid: 'key-rpm'});
  const tpm = h('input', {type: 'text', inputmode: 'numeric', autocomplete: 'off', testid: 'key-tpm'});
  const expiry = select(EXPIRIES, '', {testid: 'key-expiry'});

  const forget = () => {
    secret = null;
    replace(created);
  };

  function showOnce(answer) {
    secret = answer.key;
    const status = h('span', {class: 'copy-status', 'aria-live': 'polite', testid: 'key-copy-status'});
    const copy = h('button', {type: 'button', testid: 'key-copy', on: {click: async () => {
      try {
        await navigator.clipboard.writeText(secret);
        status.textContent = 'Copied.';
      } catch {
        status.textContent = 'Copying failed: select the key and copy it.';
      }
    }}}, 'Copy');
    replace(created, h('div', {class: 'card once', role: 'region', 'aria-label': 'New key', testid: 'key-created'},
      h('h2', {}, `Key ${answer.virtual_key.name} created`),
      h('p', {}, 'Copy it now: it is shown only this once and cannot be shown again.'),
      h('div', {class: 'secret-row'},
        h('code', {class: 'secret', testid: 'key-secret'}, secret), copy, status),
      h('button', {type: 'button', class: 'secondary', testid: 'key-done', on: {click: forget}}, 'Done')));
    copy.focus();
  }

  const form = h('form', {class: 'card', novalidate: true, testid: 'key-form', 'aria-label': 'New virtual key',
    on: {submit: async (event) => {
      event.preventDefault();
      clearErrors(form);
      replace(message);
      forget();
      const number = (input) => (input.value.trim() === '' ? undefined
        : Number.isFinite(Number(input.value)) ? Number(input.value) : input.value.trim());
      const allowed = models.value.split(',').map((item) => item.trim()).filter(Boolean);
      const body = {
        name: name.value.trim(),
        agent: agent.value || undefined,
        allowed_models: allowed.length ? allowed : undefined,
        budget_usd: budget.value.trim() || undefined,
        budget_period: budget.value.trim() ? period.value : undefined,
        rpm: number(rpm),
        tpm: number(tpm),
        expires_in_secs: expiry.value ? Number(expiry.value) : undefined,
      };
      try {
        showOnce(await post(admin('/virtual-keys'), body));
        form.reset();
        await load();
      } catch (error) {
        if (!(error.field && fieldError(form, error.field, error.message))) {
          replace(message, notice('error', error.message));
        }
      }
    }}},
  h('h2', {}, 'New virtual key'),
  h('div', {class: 'grid'},
    field('Name', name, {name: 'name'}),
    field('Agent', agent, {name: 'agent', hint: 'the only route the key may call'}),
    field('Allowed models', models, {name: 'allowed_models', hint: 'comma-separated; empty for any'}),
    field('Budget (USD)', budget, {name: 'budget_usd'}),
    field('Budget period', period, {name: 'budget_period'}),
    field('Requests per minute', rpm, {name: 'rpm'}),
    field('Tokens per minute', tpm, {name: 'tpm'}),
    field('Expires', expiry, {name: 'expires_in_secs'})),
  h('div', {class: 'form-actions'}, h('button', {type: 'submit', testid: 'key-create'}, 'Create key')),
  message);

  replace(main, h('div', {class: 'page-head'}, h('h1', {}, 'Virtual keys')), created, form,
    h('h2', {}, 'Keys'), list);

  async function load() {
    const {virtual_keys: keys} = await get(admin('/virtual-keys'));
    replace(list, table(['Name', 'Key', 'Scope', 'Budget', 'Limits', 'Expires', 'Status', ''],
      keys.map((key) => h('tr', {testid: `key-row-${key.name}`},
        h('th', {scope: 'row'}, key.name),
        h('td', {}, h('code', {}, key.key_hint || '…')),
        h('td', {}, key.agent ? `agent:${key.agent}`
          : key.models && key.models.length ? key.models.join(', ') : 'any'),
        h('td', {}, budgetBar(key)),
        h('td', {}, [key.rpm ? `${count(key.rpm)} rpm` : null, key.tpm ? `${count(key.tpm)} tpm` : null]
          .filter(Boolean).join(', ') || '—'),
        h('td', {}, key.expires_at ? when(key.expires_at) : 'never'),
        h('td', {testid: `key-status-${key.name}`}, h('span', {class: `badge ${key.status || ''}`}, key.status || '')),
        h('td', {}, key.revoked_at ? null : confirmButton('Revoke', `key-revoke-${key.name}`, async () => {
          await del(admin(`/virtual-keys/${seg(key.name)}`));
          replace(message, notice('ok', `Revoked ${key.name}.`));
          await load();
        }, message))))));
  }

  await load();
  return forget;
}
