// Plugins with what they were granted (the hosts they may reach, the
// environment they may read), and each provider's health and circuit
// breakers.

import {admin, get} from './api.js';
import {count, ms} from './format.js';
import {h, notice, replace, table} from './dom.js';

function list(values) {
  return Array.isArray(values) && values.length
    ? h('ul', {class: 'plain'}, values.map((value) => h('li', {}, h('code', {}, value))))
    : 'none';
}

/** The worst of a provider's breakers (one per base URL). */
function circuit(circuits) {
  const states = Object.values(circuits || {});
  for (const state of ['open', 'half_open']) {
    if (states.includes(state)) return state;
  }
  return 'closed';
}

export async function pluginsPage(main) {
  const plugins = h('div', {testid: 'plugins-list'});
  const health = h('div', {testid: 'health-list', 'aria-live': 'polite'});
  const refresh = h('button', {type: 'button', class: 'secondary', testid: 'health-refresh',
    on: {click: () => loadHealth()}}, 'Check again');
  replace(main, h('div', {class: 'page-head'}, h('h1', {}, 'Plugins')), plugins,
    h('div', {class: 'page-head sub'}, h('h2', {}, 'Provider health'), refresh), health);

  async function loadHealth() {
    refresh.disabled = true;
    replace(health, notice('info', 'Checking every provider…'));
    try {
      const answer = await get(admin('/providers/health'));
      replace(health, table(['Provider', 'Health', '#Latency', 'Circuit', 'Detail'],
        (answer.providers || []).map((item) => {
          const state = circuit(item.circuits);
          const breakers = Object.entries(item.circuits || {});
          return h('tr', {testid: `health-row-${item.provider}`},
            h('th', {scope: 'row'}, item.provider),
            h('td', {}, h('span', {class: item.healthy ? 'badge ok' : 'badge bad'}, item.healthy ? 'healthy' : 'unhealthy')),
            h('td', {class: 'num'}, ms(item.latency_ms)),
            h('td', {testid: `circuit-${item.provider}`},
              h('span', {class: `badge circuit-${state}`}, state.replace('_', ' ')),
              breakers.length > 1 || (breakers.length === 1 && state !== 'closed')
                ? h('ul', {class: 'plain muted'}, breakers.map(([url, value]) => h('li', {}, `${url}: ${value}`)))
                : null),
            h('td', {}, item.healthy ? item.detail || '' : item.error || item.error_kind || ''));
        })));
    } catch (error) {
      replace(health, notice('error', `Could not check the providers: ${error.message}`));
    } finally {
      refresh.disabled = false;
    }
  }

  const answer = await get(admin('/plugins'));
  replace(plugins,
    table(['Plugin', 'Version', 'Origin', '#Models', 'Hosts it may reach', 'Environment it may read', 'Contract'],
      (answer.plugins || []).map((plugin) => h('tr', {testid: `plugin-row-${plugin.id}`},
        h('th', {scope: 'row'}, plugin.name || plugin.id,
          plugin.name && plugin.name !== plugin.id ? h('div', {class: 'muted'}, plugin.id) : null),
        h('td', {}, plugin.version || '—'),
        h('td', {}, plugin.origin || '—', plugin.loaded_from ? h('div', {class: 'muted'}, plugin.loaded_from) : null),
        h('td', {class: 'num'}, count(plugin.models)),
        h('td', {}, list(plugin.hosts)),
        h('td', {}, list(plugin.env)),
        h('td', {}, h('code', {}, plugin.wit_version || '—'))))),
    (answer.errors || []).map((error) => notice('error', `A plugin did not load: ${error.message}`)));
  await loadHealth();
}
