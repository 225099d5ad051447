// How numbers, money and times read in the console.

const integer = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
const percent = new Intl.NumberFormat('en-US', {style: 'percent', maximumFractionDigits: 1});

export function count(value) {
  return value === null || value === undefined ? '—' : integer.format(Number(value));
}

/** USD from a decimal string or number: small amounts keep their digits. */
export function usd(value) {
  if (value === null || value === undefined || value === '') return '—';
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  const digits = number !== 0 && Math.abs(number) < 0.01 ? 6 : 2;
  return `$${number.toFixed(digits)}`;
}

export function rate(value) {
  return value === null || value === undefined ? '—' : percent.format(Number(value));
}

export function ms(value) {
  if (value === null || value === undefined) return '—';
  const number = Number(value);
  return number >= 1000 ? `${(number / 1000).toFixed(2)} s` : `${Math.round(number)} ms`;
}

/** A timestamp in the browser's time zone, to the minute. */
export function when(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString('en-GB', {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

/** The hour or day a bucket starts, short, for chart axes. */
export function bucketLabel(value, bucket) {
  const date = new Date(value);
  return bucket === 'day'
    ? date.toLocaleDateString('en-GB', {month: 'short', day: 'numeric'})
    : date.toLocaleTimeString('en-GB', {hour: '2-digit', minute: '2-digit'});
}
