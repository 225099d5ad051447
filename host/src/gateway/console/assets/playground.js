// The playground: one streamed chat through the gateway, its text shown
// as it arrives, then its tokens, cost and latency from the usage table.

import {admin, get, streamChat} from './api.js';
import {count, ms, usd} from './format.js';
import {field, h, notice, replace, select} from './dom.js';

/** How long to wait for the call's usage rows, written in batches. */
const USAGE_TRIES = 20;
const USAGE_PAUSE_MS = 100;

const sleep = (millis) => new Promise((resolve) => setTimeout(resolve, millis));

async function usageOf(requestId) {
  for (let i = 0; i < USAGE_TRIES; i += 1) {
    try {
      const {events} = await get(admin(`/usage/requests/${encodeURIComponent(requestId)}`));
      if (events && events.length) return events;
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    await sleep(USAGE_PAUSE_MS);
  }
  return [];
}

function millis(event, ...names) {
  for (const name of names) {
    if (event[name] !== undefined && event[name] !== null) return Number(event[name]);
  }
  return null;
}

export async function playgroundPage(main) {
  const [agents, plugins] = await Promise.all([
    get(admin('/agents')).then((answer) => answer.agents || []).catch(() => []),
    get(admin('/plugins')).then((answer) => answer.plugins || []).catch(() => []),
  ]);
  const mode = select([['agent', 'An agent'], ['model', 'A provider and model']],
    agents.length ? 'agent' : 'model', {testid: 'play-mode'});
  const agent = select(agents.length ? agents.map((item) => [item.name, `agent:${item.name}`]) : [['', 'No agents yet']],
    '', {testid: 'play-agent'});
  const provider = select([['', 'Choose a provider…'], ...plugins.map((plugin) => [plugin.id, plugin.id])], '',
    {testid: 'play-provider'});
  const model = select([['', 'Choose a provider first']], '', {testid: 'play-model'});
  const prompt = h('textarea', {rows: 5, testid: 'play-prompt', placeholder: 'Say hello.'});
  const send = h('button', {type: 'submit', testid: 'play-send'}, 'Send');
  const stop = h('button', {type: 'button', class: 'secondary', disabled: true, testid: 'play-stop'}, 'Stop');
  const output = h('div', {class: 'output', 'aria-live': 'polite', 'aria-label': 'Answer', role: 'log',
    testid: 'play-output'});
  const stats = h('div', {class: 'stats', 'aria-live': 'polite', testid: 'play-stats'});
  const agentField = field('Agent', agent, {name: 'agent'});
  const providerField = field('Provider', provider, {name: 'provider'});
  const modelField = field('Model', model, {name: 'model'});
  let controller = null;

  const showMode = () => {
    agentField.hidden = mode.value !== 'agent';
    providerField.hidden = mode.value === 'agent';
    modelField.hidden = mode.value === 'agent';
  };
  mode.addEventListener('change', showMode);
  provider.addEventListener('change', async () => {
    replace(model, h('option', {value: ''}, 'Loading models…'));
    const {models} = await get(admin('/models', {provider: provider.value})).catch(() => ({models: []}));
    replace(model, (models || []).map((item) => h('option', {value: item.model}, item.model)));
  });
  stop.addEventListener('click', () => controller && controller.abort());

  const target = () => (mode.value === 'agent' ? (agent.value ? `agent:${agent.value}` : '')
    : provider.value && model.value ? `${provider.value}/${model.value}` : '');

  const form = h('form', {class: 'card playground', novalidate: true, testid: 'play-form', on: {submit: async (event) => {
    event.preventDefault();
    const route = target();
    replace(stats);
    if (!route || !prompt.value.trim()) {
      replace(stats, notice('error', route ? 'Write a prompt first.' : 'Choose an agent or a provider and model.'));
      return;
    }
    replace(output);
    const text = document.createTextNode('');
    output.append(text);
    output.setAttribute('aria-busy', 'true');
    send.disabled = true;
    stop.disabled = false;
    controller = new AbortController();
    try {
      const result = await streamChat({
        model: route,
        messages: [{role: 'user', content: prompt.value}],
        stream: true,
        stream_options: {include_usage: true},
      }, (piece) => text.appendData(piece), controller.signal);
      if (result.error) replace(stats, notice('error', result.error));
      await showStats(result);
    } catch (error) {
      replace(stats, notice('error', error.name === 'AbortError' ? 'Stopped.' : `The call failed: ${error.message}`));
    } finally {
      output.removeAttribute('aria-busy');
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  }}},
  h('div', {class: 'grid'}, field('Call', mode, {name: 'mode'}), agentField, providerField, modelField),
  field('Prompt', prompt, {name: 'prompt'}),
  h('div', {class: 'form-actions'}, send, stop));

  async function showStats(result) {
    const row = (label, value, testid) => h('div', {class: 'stat'}, h('dt', {}, label), h('dd', {testid}, value));
    const seen = [
      row('Time to first token (browser)', ms(result.firstTokenMs), 'play-ttft'),
      row('Total (browser)', ms(result.totalMs), 'play-total'),
      row('Request id', result.requestId || '—', 'play-request-id'),
    ];
    const list = h('dl', {class: 'stat-grid'}, seen);
    replace(stats, list);
    if (!result.requestId) return;
    const events = await usageOf(result.requestId);
    if (!events.length) {
      stats.append(notice('info', 'The usage of this call is not recorded yet.'));
      return;
    }
    const last = events[events.length - 1];
    const sum = (name) => events.reduce((total, event) => total + (Number(event[name]) || 0), 0);
    const priced = events.some((event) => event.cost_usd !== null && event.cost_usd !== undefined);
    list.append(
      row('Input tokens', count(sum('input_tokens')), 'play-input-tokens'),
      row('Output tokens', count(sum('output_tokens')), 'play-output-tokens'),
      row('Cost', priced ? usd(sum('cost_usd')) : 'unpriced', 'play-cost'),
      row('Time to first token (gateway)', ms(millis(last, 'time_to_first_token_ms', 'ttft_ms')), 'play-server-ttft'),
      row('Latency (gateway)', ms(millis(last, 'latency_ms')), 'play-server-latency'),
      row('Served by', `${last.provider}/${last.model}${events.length > 1 ? `, after ${events.length - 1} failed attempt(s)` : ''}`,
        'play-served-by'));
  }

  showMode();
  replace(main, h('div', {class: 'page-head'}, h('h1', {}, 'Playground')), form,
    h('section', {class: 'card', 'aria-label': 'Answer'}, h('h2', {}, 'Answer'), output, stats));
}
