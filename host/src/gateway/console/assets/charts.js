// Line charts drawn as inline SVG. Every point is a circle with a stable
// test id (`PREFIX-point-LINE-INDEX`), its value in `data-value` and its
// bucket in `data-start`, and a tooltip through `<title>`.

import {bucketLabel} from './format.js';
import {h, s} from './dom.js';

const WIDTH = 520;
const HEIGHT = 190;
const LEFT = 70;
const RIGHT = 12;
const TOP = 12;
const BOTTOM = 26;
const PALETTE = ['#4c8dff', '#f28b30', '#2fb380', '#d65db1', '#e5c02b', '#8f7cf0', '#e05555', '#3fb8c9'];

/** The colour of the `index`th group, the same in every chart. */
export function colour(index) {
  return PALETTE[index % PALETTE.length];
}

const GRID_LINES = 4;

/** A round step (1, 2, 2.5 or 5 times a power of ten) such that four of
 * them reach `max` (`empty` when nothing is above zero); whole numbers
 * only when `whole`. */
function niceStep(max, whole, empty) {
  const raw = (max > 0 ? max : empty) / GRID_LINES;
  const power = 10 ** Math.floor(Math.log10(raw));
  const multiples = whole && power < 10 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  const step = multiples.map((m) => m * power).find((candidate) => candidate >= raw * (1 - 1e-9));
  return whole ? Math.max(1, Math.round(step)) : step;
}

/** How many decimals a multiple of `step` needs. */
function decimalsOf(step) {
  let decimals = 0;
  while (decimals < 10 && Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6) decimals += 1;
  return decimals;
}

/**
 * A chart of `lines` (`{key, label, colour, dashed, points: [{start, value}]}`)
 * over the time from `since` to `until`; `format` writes a value, and
 * `axis(value, decimals)` an axis label.
 */
export function lineChart({testid, title, lines, since, until, bucket, format, axis, whole = false, empty = 1}) {
  const start = since.getTime();
  const span = Math.max(until.getTime() - start, 1);
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const values = lines.flatMap((line) => line.points.map((point) => point.value))
    .filter((value) => Number.isFinite(value));
  const step = niceStep(Math.max(0, ...values), whole, empty);
  const decimals = decimalsOf(step);
  const top = step * GRID_LINES;
  const x = (time) => LEFT + Math.min(Math.max((time - start) / span, 0), 1) * plotWidth;
  const y = (value) => TOP + plotHeight - (value / top) * plotHeight;

  const grid = [];
  for (let i = 0; i <= GRID_LINES; i += 1) {
    const value = step * i;
    grid.push(s('line', {class: 'grid', x1: LEFT, x2: WIDTH - RIGHT, y1: y(value), y2: y(value)}));
    grid.push(s('text', {class: 'axis', x: LEFT - 6, y: y(value) + 4, 'text-anchor': 'end'},
      axis ? axis(value, decimals) : value.toFixed(decimals)));
  }
  const ticks = [];
  for (let i = 0; i <= 5; i += 1) {
    const time = start + (span * i) / 5;
    ticks.push(s('text', {class: 'axis', x: x(time), y: HEIGHT - 8,
      'text-anchor': i === 0 ? 'start' : i === 5 ? 'end' : 'middle'}, bucketLabel(time, bucket)));
  }

  const drawn = lines.map((line) => {
    const points = line.points
      .filter((point) => Number.isFinite(point.value))
      .map((point) => ({...point, time: new Date(point.start).getTime()}))
      .sort((a, b) => a.time - b.time);
    const path = points.map((point, i) => `${i ? 'L' : 'M'}${x(point.time).toFixed(1)},${y(point.value).toFixed(1)}`).join(' ');
    return s('g', {class: 'line', testid: `${testid}-line-${line.key}`},
      points.length > 1 ? s('path', {d: path, fill: 'none', stroke: line.colour, 'stroke-width': 2,
        'stroke-dasharray': line.dashed ? '5 4' : undefined}) : null,
      points.map((point, i) => s('circle', {
        cx: x(point.time).toFixed(1), cy: y(point.value).toFixed(1), r: 3.5,
        fill: line.dashed ? 'var(--surface)' : line.colour, stroke: line.colour, 'stroke-width': 2,
        testid: `${testid}-point-${line.key}-${i}`,
        'data-value': point.value, 'data-start': point.start, 'data-group': line.key,
      }, s('title', {}, `${line.label}, ${bucketLabel(point.start, bucket)}: ${format(point.value)}`))));
  });

  const placeholder = values.length === 0
    ? s('text', {class: 'axis empty', x: LEFT + plotWidth / 2, y: TOP + plotHeight / 2, 'text-anchor': 'middle'},
      'No requests in this range')
    : null;
  const svg = s('svg', {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', class: 'chart',
    'aria-label': `${title}: ${lines.length} series`},
  s('line', {class: 'baseline', x1: LEFT, x2: WIDTH - RIGHT, y1: y(0), y2: y(0)}),
  grid, ticks, drawn, placeholder);
  return h('figure', {class: 'chart-card', testid},
    h('figcaption', {}, title), svg, legend(lines));
}

function legend(lines) {
  return h('ul', {class: 'legend'}, lines.map((line) => {
    const swatch = h('span', {class: line.dashed ? 'swatch dashed' : 'swatch', 'aria-hidden': 'true'});
    swatch.style.borderColor = line.colour;
    if (!line.dashed) swatch.style.backgroundColor = line.colour;
    return h('li', {}, swatch, line.label);
  }));
}
