// Agents: the list, a form to create one, and one agent's configs (in the
// order they are tried) with their forms, validation and deletion.

import {ApiError, admin, del, get, post, seg} from './api.js';
import {configForm} from './config_form.js';
import {clearErrors, field, fieldError, h, notice, replace, table} from './dom.js';
import {count, ms, usd, when} from './format.js';

export async function agentsPage(main) {
  const list = h('div', {testid: 'agents-list'});
  const name = h('input', {type: 'text', required: true, autocomplete: 'off', spellcheck: 'false',
    testid: 'agent-name'});
  const description = h('input', {type: 'text', autocomplete: 'off', testid: 'agent-description'});
  const message = h('div', {'aria-live': 'polite'});
  const form = h('form', {class: 'card inline-form', novalidate: true, testid: 'agent-form',
    'aria-label': 'New agent', on: {submit: async (event) => {
      event.preventDefault();
      clearErrors(form);
      replace(message);
      try {
        const agent = await post(admin('/agents'), {name: name.value.trim(),
          description: description.value.trim() || undefined});
        location.hash = `#/agents/${encodeURIComponent(agent.name)}`;
      } catch (error) {
        if (!(error.field && fieldError(form, error.field, error.message))) {
          replace(message, notice('error', error.message));
        }
      }
    }}},
  h('h2', {}, 'New agent'),
  h('div', {class: 'row'},
    field('Name', name, {name: 'name'}),
    field('Description', description, {name: 'description'}),
    h('button', {type: 'submit', testid: 'agent-create'}, 'Create agent')),
  message);
  replace(main, h('div', {class: 'page-head'}, h('h1', {}, 'Agents')), form, list);

  const {agents} = await get(admin('/agents'));
  replace(list, table(['Name', 'Description', '#Configs', 'Budget', 'Updated'],
    agents.map((agent) => h('tr', {testid: `agent-row-${agent.name}`},
      h('th', {scope: 'row'}, h('a', {href: `#/agents/${encodeURIComponent(agent.name)}`}, agent.name)),
      h('td', {}, agent.description || ''),
      h('td', {class: 'num'}, count(agent.configs)),
      h('td', {}, budgetText(agent)),
      h('td', {}, when(agent.updated_at))))));
}

function budgetText(agent) {
  const parts = [];
  if (agent.budget_usd !== null && agent.budget_usd !== undefined) parts.push(usd(agent.budget_usd));
  if (agent.budget_tokens !== null && agent.budget_tokens !== undefined) parts.push(`${count(agent.budget_tokens)} tokens`);
  if (!parts.length) return 'none';
  return `${parts.join(' and ')} per ${agent.budget_period || 'month'}`;
}

export async function agentPage(main, name) {
  const configsNode = h('div', {testid: 'configs'});
  const formSlot = h('div', {});
  const message = h('div', {'aria-live': 'polite', testid: 'agent-message'});
  const addButton = h('button', {type: 'button', testid: 'config-add', on: {click: () => openForm(null)}},
    'Add config');
  const [agent, plugins] = await Promise.all([
    get(admin(`/agents/${seg(name)}`)),
    get(admin('/plugins')).then((answer) => answer.plugins || []).catch(() => []),
  ]);
  const deleteAgent = confirmButton('Delete agent', `agent-delete`, async () => {
    await del(admin(`/agents/${seg(name)}`));
    location.hash = '#/agents';
  }, message);
  replace(main,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/agents'}, 'Agents'), ' / ', agent.name),
    h('div', {class: 'page-head'},
      h('h1', {testid: 'agent-title'}, `Agent ${agent.name}`),
      h('div', {class: 'actions'}, addButton, deleteAgent)),
    agent.description ? h('p', {class: 'lead'}, agent.description) : null,
    h('p', {class: 'hint'}, 'Call it as ', h('code', {}, `agent:${agent.name}`),
      '; its configs are tried in this order, each with its fallback.'),
    message, formSlot,
    h('h2', {}, 'Configs'), configsNode);

  function openForm(config) {
    replace(message);
    addButton.disabled = true;
    replace(formSlot, configForm({
      agent: name, config, plugins,
      saved: (answer) => {
        replace(formSlot);
        addButton.disabled = false;
        replace(message, notice('ok', `Saved config ${answer.id} (${answer.provider}/${answer.model}).`));
        loadConfigs();
      },
      cancelled: async (options = {}) => {
        replace(formSlot);
        addButton.disabled = false;
        if (options.reload && config) {
          await loadConfigs();
          try {
            openForm(await get(admin(`/configs/${seg(config.id)}`)));
          } catch (error) {
            replace(message, notice('error', error.message));
          }
        }
      },
    }));
    formSlot.querySelector('select, input').focus();
  }

  async function loadConfigs() {
    const {configs} = await get(admin(`/agents/${seg(name)}/configs`));
    replace(configsNode, table(['#Order', 'Provider / model', 'Settings', 'Fallback', 'API key', 'Enabled', 'Actions'],
      configs.map((config) => configRow(config))));
  }

  function configRow(config) {
    const result = h('div', {class: 'validate-result', 'aria-live': 'polite', testid: `validate-result-${config.id}`});
    const validate = h('button', {type: 'button', class: 'secondary', testid: `config-validate-${config.id}`,
      on: {click: async () => {
        validate.disabled = true;
        replace(result, 'Checking…');
        try {
          const answer = await post(admin(`/configs/${seg(config.id)}/validate`));
          const latency = answer.latency_ms === null || answer.latency_ms === undefined ? '' : ` in ${ms(answer.latency_ms)}`;
          replace(result, answer.healthy
            ? notice('ok', `Healthy${latency}${answer.detail ? `: ${answer.detail}` : ''}`)
            : notice('error', `Not healthy: ${answer.error || answer.error_kind || 'no answer'}`));
        } catch (error) {
          replace(result, notice('error', error.message));
        } finally {
          validate.disabled = false;
        }
      }}}, 'Validate');
    const settings = [
      config.temperature !== null && config.temperature !== undefined ? `temperature ${config.temperature}` : null,
      config.max_tokens ? `max_tokens ${config.max_tokens}` : null,
      config.top_p !== null && config.top_p !== undefined ? `top_p ${config.top_p}` : null,
      config.base_url ? `base_url ${config.base_url}` : null,
      config.prices ? `prices ${config.prices.input}/${config.prices.output}` : null,
    ].filter(Boolean).join(', ') || 'defaults';
    return h('tr', {testid: `config-row-${config.id}`},
      h('td', {class: 'num'}, count(config.priority)),
      h('th', {scope: 'row'}, `${config.provider}/${config.model}`),
      h('td', {}, settings),
      h('td', {}, config.fallback_provider ? `${config.fallback_provider}/${config.fallback_model || '…'}` : '—'),
      h('td', {testid: `config-key-${config.id}`}, config.has_api_key ? `stored ${config.api_key_hint || ''}`.trim() : 'environment'),
      h('td', {}, config.enabled ? 'yes' : 'no'),
      h('td', {class: 'row-actions'},
        h('button', {type: 'button', class: 'secondary', testid: `config-edit-${config.id}`,
          on: {click: () => openForm(config)}}, 'Edit'),
        validate,
        confirmButton('Delete', `config-delete-${config.id}`, async () => {
          await del(admin(`/configs/${seg(config.id)}`));
          replace(message, notice('ok', `Deleted config ${config.id}.`));
          await loadConfigs();
        }, message),
        result));
  }

  await loadConfigs();
}

/** A button that asks again before running `action`. */
export function confirmButton(label, testid, action, message) {
  const button = h('button', {type: 'button', class: 'danger', testid});
  let armed = false;
  const disarm = () => {
    armed = false;
    button.textContent = label;
  };
  disarm();
  button.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      button.textContent = `Confirm: ${label.toLowerCase()}`;
      return;
    }
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      replace(message, notice('error', error instanceof ApiError ? error.message : String(error)));
    } finally {
      button.disabled = false;
      disarm();
    }
  });
  button.addEventListener('blur', disarm);
  return button;
}
