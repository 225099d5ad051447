// Plugins with what they were granted, and each provider's health and
// circuit breaker.

import {admin, get} from './api.js';
import {count, ms} from './format.js';
import {h, notice, replace, table} from './dom.js';

function grants(value) {
  if (!value || typeof value !== 'object') return '—';
  const entries = Object.entries(value);
  if (!entries.length) return 'none';
  return h('dl', {class: 'grants'}, entries.map(([key, item]) => [
    h('dt', {}, key),
    h('dd', {}, Array.isArray(item) ? item.join(', ') || 'none'
      : item && typeof item === 'object' ? JSON.stringify(item) : String(item)),
  ]));
}

export async function pluginsPage(main) {
  const plugins = h('div', {testid: 'plugins-list'});
  const health = h('div', {testid: 'health-list', 'aria-live': 'polite'});
  const refresh = h('button', {type: 'button', class: 'secondary', testid: 'health-refresh',
    on: {click: () => loadHealth()}}, 'Check again');
  replace(main, h('div', {class: 'page-head'}, h('h1', {}, 'Plugins')), plugins,
    h('div', {class: 'page-head'}, h('h2', {}, 'Provider health'), refresh), health);

  async function loadHealth() {
    refresh.disabled = true;
    try {
      const answer = await get(admin('/providers/health'));
      replace(health, table(['Provider', 'Healthy', 'Latency', 'Circuit', 'Error'],
        (answer.providers || []).map((item) => h('tr', {testid: `health-row-${item.provider}`},
          h('th', {scope: 'row'}, item.provider),
          h('td', {}, h('span', {class: item.healthy ? 'badge ok' : 'badge bad'}, item.healthy ? 'healthy' : 'unhealthy')),
          h('td', {class: 'num'}, ms(item.latency_ms)),
          h('td', {}, h('span', {class: `badge circuit-${item.circuit}`}, (item.circuit || '').replace('_', ' '))),
          h('td', {}, item.error ? (item.error.message || String(item.error)) : '')))));
    } catch (error) {
      replace(health, notice('error', `Could not check the providers: ${error.message}`));
    } finally {
      refresh.disabled = false;
    }
  }

  const answer = await get(admin('/plugins'));
  replace(plugins, table(['Plugin', 'Version', 'Models', 'Approved hosts', 'Grants', 'Path'],
    (answer.plugins || []).map((plugin) => h('tr', {testid: `plugin-row-${plugin.id}`},
      h('th', {scope: 'row'}, plugin.name || plugin.id, plugin.name && plugin.name !== plugin.id
        ? h('span', {class: 'muted'}, ` (${plugin.id})`) : null),
      h('td', {}, plugin.version || '—'),
      h('td', {class: 'num'}, count(plugin.models)),
      h('td', {}, (plugin.approved_hosts || []).join(', ') || 'none'),
      h('td', {}, grants(plugin.grants)),
      h('td', {class: 'path'}, plugin.path || '')))));
  await loadHealth();
}
