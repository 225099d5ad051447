// The form that creates or edits one config of an agent. The browser does
// not validate: the API's 422 names the field at fault, and its message is
// shown next to that field. The API key is write-only: the form shows only
// whether one is stored and its hint.

import {ApiError, admin, get, patch, post, seg} from './api.js';
import {clearErrors, field, fieldError, h, notice, replace, select} from './dom.js';

const PRICE_KINDS = [
  ['input', 'Input'],
  ['output', 'Output'],
  ['cache_read', 'Cache read'],
  ['cache_write', 'Cache write (5 min)'],
  ['cache_write_hour', 'Cache write (1 h)'],
];

function text(value) {
  return value === null || value === undefined ? '' : String(value);
}

/** A number typed in a field; the text itself when it is not one, so the
 * API says what is wrong with it. */
function numeric(value, integer) {
  const trimmed = value.trim();
  if (trimmed === '') return null;
  const number = integer ? Number.parseInt(trimmed, 10) : Number(trimmed);
  return Number.isFinite(number) && String(number) === String(Number(trimmed)) ? number : trimmed;
}

/**
 * The form for `config` of agent `agent` (a new one when `config` is
 * null); `saved(config)` is called after a save, `cancelled()` on Cancel.
 */
export function configForm({agent, config, plugins, saved, cancelled}) {
  const editing = Boolean(config);
  const current = config || {enabled: true, priority: null};
  const providers = plugins.map((plugin) => [plugin.id, plugin.name && plugin.name !== plugin.id
    ? `${plugin.name} (${plugin.id})` : plugin.id]);
  const provider = select([['', 'Choose a provider…'], ...providers], current.provider, {testid: 'config-provider'});
  const model = select([['', 'Choose a provider first']], current.model, {testid: 'config-model'});
  const input = (value, attrs = {}) => h('input', {type: 'text', value: text(value), autocomplete: 'off',
    spellcheck: 'false', ...attrs});
  const temperature = input(current.temperature, {inputmode: 'decimal', testid: 'config-temperature'});
  const maxTokens = input(current.max_tokens, {inputmode: 'numeric', testid: 'config-max_tokens'});
  const topP = input(current.top_p, {inputmode: 'decimal', testid: 'config-top_p'});
  const baseUrl = input(current.base_url, {type: 'url', placeholder: 'the provider\'s default',
    testid: 'config-base_url'});
  const apiKey = h('input', {type: 'password', autocomplete: 'new-password', testid: 'config-api_key',
    placeholder: current.has_api_key ? `stored (${text(current.api_key_hint) || 'hidden'}); type to replace`
      : 'the provider\'s key from the environment'});
  const clearKey = h('input', {type: 'checkbox', testid: 'config-clear-api-key'});
  const fallbackProvider = select([['', 'None'], ...providers], current.fallback_provider,
    {testid: 'config-fallback_provider'});
  const fallbackModel = input(current.fallback_model, {testid: 'config-fallback_model'});
  const prices = Object.fromEntries(PRICE_KINDS.map(([kind]) => [kind, input(
    current.prices ? current.prices[kind] : '', {inputmode: 'decimal', placeholder: 'catalogue',
      testid: `config-price-${kind}`})]));
  const priority = input(current.priority, {inputmode: 'numeric', testid: 'config-priority',
    placeholder: editing ? '' : 'last'});
  const enabled = h('input', {type: 'checkbox', checked: current.enabled !== false, testid: 'config-enabled'});
  const message = h('div', {'aria-live': 'polite', testid: 'config-message'});
  const submit = h('button', {type: 'submit', testid: 'config-save'}, editing ? 'Save changes' : 'Add config');

  async function loadModels(chosen) {
    if (!provider.value) {
      replace(model, h('option', {value: ''}, 'Choose a provider first'));
      return;
    }
    replace(model, h('option', {value: ''}, 'Loading models…'));
    let models = [];
    try {
      models = (await get(admin('/models', {provider: provider.value}))).models || [];
    } catch (error) {
      replace(message, notice('error', `Could not load the models: ${error.message}`));
    }
    const ids = models.map((item) => item.model);
    if (chosen && !ids.includes(chosen)) ids.unshift(chosen);
    replace(model, h('option', {value: ''}, ids.length ? 'Choose a model…' : 'No models listed'),
      ids.map((id) => h('option', {value: id, selected: id === chosen}, id)));
  }
  provider.addEventListener('change', () => loadModels(''));

  function body() {
    const values = {
      provider: provider.value || null,
      model: model.value || null,
      temperature: numeric(temperature.value, false),
      max_tokens: numeric(maxTokens.value, true),
      top_p: numeric(topP.value, false),
      base_url: baseUrl.value.trim() || null,
      fallback_provider: fallbackProvider.value || null,
      fallback_model: fallbackModel.value.trim() || null,
      priority: numeric(priority.value, true),
      enabled: enabled.checked,
    };
    const priced = PRICE_KINDS.some(([kind]) => prices[kind].value.trim() !== '');
    values.prices = priced
      ? Object.fromEntries(PRICE_KINDS.map(([kind]) => [kind, prices[kind].value.trim() || null]))
      : null;
    if (apiKey.value) values.api_key = apiKey.value;
    else if (editing && clearKey.checked) values.api_key = null;
    if (editing) return {updated_at: config.updated_at, ...values};
    // A new config leaves out what is not given: the defaults apply.
    return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== null));
  }

  const form = h('form', {class: 'card config-form', novalidate: true, testid: 'config-form',
    'aria-label': editing ? `Edit config ${config.id}` : 'New config',
    on: {submit: async (event) => {
      event.preventDefault();
      clearErrors(form);
      replace(message);
      submit.disabled = true;
      try {
        const answer = editing
          ? await patch(admin(`/configs/${seg(config.id)}`), body())
          : await post(admin(`/agents/${seg(agent)}/configs`), body());
        apiKey.value = '';
        saved(answer);
      } catch (error) {
        apiKey.value = '';
        showError(error);
      } finally {
        submit.disabled = false;
      }
    }}},
  h('h3', {}, editing ? `Edit config ${config.id}: ${config.provider}/${config.model}` : 'New config'),
  h('div', {class: 'grid'},
    field('Provider', provider, {name: 'provider'}),
    field('Model', model, {name: 'model'}),
    field('Temperature', temperature, {name: 'temperature', hint: '0 to 2; empty for the model\'s default'}),
    field('Max tokens', maxTokens, {name: 'max_tokens'}),
    field('Top p', topP, {name: 'top_p', hint: '0 to 1'}),
    field('Base URL', baseUrl, {name: 'base_url'}),
    field('API key', apiKey, {name: 'api_key', hint: 'write-only: never shown again'}),
    editing && current.has_api_key ? field('Remove the stored key', clearKey, {name: 'clear_api_key'}) : null,
    field('Fallback provider', fallbackProvider, {name: 'fallback_provider'}),
    field('Fallback model', fallbackModel, {name: 'fallback_model'}),
    field('Priority', priority, {name: 'priority', hint: '0 is tried first'}),
    field('Enabled', enabled, {name: 'enabled'})),
  h('fieldset', {class: 'prices', 'data-field': 'prices'},
    h('legend', {}, 'Prices, USD per million tokens (empty: the catalogue\'s)'),
    h('div', {class: 'grid five'}, PRICE_KINDS.map(([kind, label]) =>
      field(label, prices[kind], {name: `prices.${kind}`}))),
    h('p', {class: 'field-error', role: 'alert', hidden: true})),
  h('div', {class: 'form-actions'}, submit,
    h('button', {type: 'button', class: 'secondary', on: {click: () => cancelled()}}, 'Cancel')),
  message);

  function showError(error) {
    if (error instanceof ApiError && error.status === 409) {
      replace(message, notice('error', h('span', {testid: 'config-conflict'},
        'This config was changed by someone else. Reload it to see the current version.'), ' ',
      h('button', {type: 'button', class: 'secondary', testid: 'config-reload',
        on: {click: () => cancelled({reload: true})}}, 'Reload')));
      return;
    }
    if (error instanceof ApiError && error.field && fieldError(form, error.field, error.message)) return;
    replace(message, notice('error', error.message));
  }

  loadModels(current.model);
  return form;
}
