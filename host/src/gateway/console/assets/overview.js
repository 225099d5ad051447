// The overview: spend, requests, error rate and latency over time, per
// provider and per agent, with the totals of each group in a table.

import {admin, get} from './api.js';
import {colour, lineChart} from './charts.js';
import {count, ms, rate, usd} from './format.js';
import {h, notice, replace, table} from './dom.js';

const RANGES = [
  {key: '24h', label: 'Last 24 hours', hours: 24, bucket: 'hour'},
  {key: '7d', label: 'Last 7 days', hours: 24 * 7, bucket: 'day'},
];
const GROUPS = [
  {key: 'provider', title: 'By provider'},
  {key: 'agent', title: 'By agent'},
];

function number(value) {
  if (value === null || value === undefined) return NaN;
  return Number(value);
}

/** The totals of a series: requests, errors, spend, and its latencies. */
function totals(series) {
  let requests = 0;
  let errors = 0;
  let spend = 0;
  let weighted = 0;
  let p99 = null;
  for (const point of series.points) {
    requests += point.requests || 0;
    errors += point.errors || 0;
    spend += number(point.cost_usd) || 0;
    if (Number.isFinite(number(point.p50_ms))) weighted += number(point.p50_ms) * (point.requests || 0);
    if (Number.isFinite(number(point.p99_ms))) p99 = Math.max(p99 ?? 0, number(point.p99_ms));
  }
  return {requests, errors, spend, p50: requests ? weighted / requests : null, p99};
}

function section(group, data, since, until, bucket) {
  // Calls made without an agent (or key) are the group `(none)`.
  const unnamed = group.key === 'agent' ? 'no agent' : 'none';
  const series = (data.series || []).map((item, index) => ({...item, colour: colour(index),
    key: item.group ?? '(none)', label: item.group && item.group !== '(none)' ? item.group : unnamed}));
  const lines = (pick, extra = {}) => series.map((item) => ({
    key: item.key, label: item.label, colour: item.colour, ...extra,
    points: item.points.map((point) => ({start: point.start, value: pick(point)})),
  }));
  const prefix = `chart-${group.key}`;
  const common = {since, until, bucket};
  const charts = h('div', {class: 'charts'},
    lineChart({...common, testid: `${prefix}-spend`, title: 'Spend (USD)',
      lines: lines((p) => number(p.cost_usd)), format: usd, axis: (v, d) => `$${v.toFixed(d)}`, empty: 0.01}),
    lineChart({...common, testid: `${prefix}-requests`, title: 'Requests',
      lines: lines((p) => p.requests), format: count, whole: true, empty: 4}),
    lineChart({...common, testid: `${prefix}-errors`, title: 'Error rate',
      lines: lines((p) => number(p.error_rate)), format: rate,
      axis: (v, d) => `${(v * 100).toFixed(Math.max(d - 2, 0))}%`}),
    lineChart({...common, testid: `${prefix}-latency`, title: 'Latency p50 (solid) and p99 (dashed)',
      lines: [
        ...lines((p) => number(p.p50_ms)).map((line) => ({...line, label: `${line.label} p50`, key: `${line.key}-p50`})),
        ...lines((p) => number(p.p99_ms)).map((line) => ({...line, label: `${line.label} p99`, key: `${line.key}-p99`, dashed: true})),
      ],
      format: ms, axis: (v, d) => `${v.toFixed(d)} ms`, empty: 100}));
  const rows = series.map((item) => {
    const sum = totals(item);
    const cell = (name, text) => h('td', {class: 'num', testid: `total-${group.key}-${item.key}-${name}`}, text);
    const swatch = h('span', {class: 'swatch', 'aria-hidden': 'true'});
    swatch.style.backgroundColor = item.colour;
    swatch.style.borderColor = item.colour;
    return h('tr', {testid: `total-${group.key}-${item.key}`},
      h('th', {scope: 'row'}, swatch, item.label),
      cell('requests', count(sum.requests)),
      cell('errors', sum.requests ? rate(sum.errors / sum.requests) : '—'),
      cell('spend', usd(sum.spend)),
      cell('p50', ms(sum.p50)),
      cell('p99', ms(sum.p99)));
  });
  return h('section', {class: 'overview-group', testid: `overview-${group.key}`,
    'aria-labelledby': `heading-${group.key}`},
  h('h2', {id: `heading-${group.key}`}, group.title),
  h('div', {class: 'overview-body'},
    charts,
    h('div', {class: 'totals'},
      table([group.key === 'agent' ? 'Agent' : 'Provider', '#Requests', '#Errors', '#Spend', '#p50', '#p99'], rows,
        {testid: `totals-${group.key}`, class: 'compact'}),
      h('p', {class: 'hint'}, 'Over the range: p50 is the buckets\' medians weighted by their requests, '
        + 'p99 the highest bucket\'s.'))));
}

export async function overviewPage(main) {
  let range = RANGES[0];
  const content = h('div', {'aria-live': 'polite', testid: 'overview'});
  const picker = h('div', {class: 'segmented', role: 'group', 'aria-label': 'Range'});
  const refresh = h('button', {type: 'button', class: 'secondary', testid: 'overview-refresh',
    on: {click: () => load()}}, 'Refresh');
  const draw = () => replace(picker, RANGES.map((item) => h('button', {
    type: 'button', 'aria-pressed': String(item === range), testid: `range-${item.key}`,
    on: {click: () => {
      range = item;
      draw();
      load();
    }},
  }, item.label)));
  draw();
  replace(main,
    h('div', {class: 'page-head'}, h('h1', {}, 'Overview'), h('div', {class: 'actions'}, picker, refresh)),
    content);

  async function load() {
    const until = new Date();
    const since = new Date(until.getTime() - range.hours * 3600 * 1000);
    content.setAttribute('aria-busy', 'true');
    try {
      const answers = await Promise.all(GROUPS.map((group) => get(admin('/usage/series', {
        bucket: range.bucket, group_by: group.key, since: since.toISOString(), until: until.toISOString(),
      }))));
      replace(content, GROUPS.map((group, i) => section(group, answers[i], since, until, answers[i].bucket || range.bucket)));
      content.setAttribute('data-loaded', until.toISOString());
    } catch (error) {
      replace(content, notice('error', `Could not load usage: ${error.message}`));
    } finally {
      content.removeAttribute('aria-busy');
    }
  }
  await load();
}
