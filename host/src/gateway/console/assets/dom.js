// Building the page from values. Text always goes in as text nodes, never
// as markup, so names and messages from the API cannot become elements.

const SVG = 'http://www.w3.org/2000/svg';

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === 'testid') {
      node.setAttribute('data-testid', value);
    } else if (key === 'value' && node instanceof HTMLInputElement) {
      // The default too, so that a form's reset() comes back to it.
      node.defaultValue = value;
    } else if (key === 'value' && 'value' in node) {
      node.value = value;
    } else if (key === 'checked') {
      node.checked = node.defaultChecked = Boolean(value);
    } else if (key === 'selected') {
      node.selected = node.defaultSelected = Boolean(value);
    } else if (key === 'disabled') {
      node.disabled = Boolean(value);
    } else if (key.startsWith('on')) {
      throw new Error(`event attribute ${key}: use "on"`);
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: `h('button', {type: 'submit'}, 'Save')`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, as `h` makes HTML ones. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

/** Replaces what `node` holds with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

let fieldIds = 0;

/**
 * A labelled form field: `control` (an input, select or textarea) with its
 * label, a hint and a place for the error the API gives for `name`.
 */
export function field(label, control, {name, hint} = {}) {
  fieldIds += 1;
  const id = control.id || `f${fieldIds}`;
  control.id = id;
  if (name) control.name = name;
  const error = h('p', {class: 'field-error', id: `${id}-error`, role: 'alert',
    testid: name ? `error-${name}` : undefined, hidden: true});
  const help = hint ? h('p', {class: 'hint', id: `${id}-hint`}, hint) : null;
  control.setAttribute('aria-describedby', [help && help.id, error.id].filter(Boolean).join(' '));
  const wrapper = h('div', {class: control.type === 'checkbox' ? 'field check' : 'field',
    'data-field': name},
  control.type === 'checkbox'
    ? [control, h('label', {for: id}, label)]
    : [h('label', {for: id}, label), control],
  help, error);
  return wrapper;
}

/** Shows `message` as the error of field `name` in `form`; false if none. */
export function fieldError(form, name, message) {
  const candidates = [name, name.split(/[.[]/)[0]];
  for (const candidate of candidates) {
    const wrapper = form.querySelector(`[data-field="${CSS.escape(candidate)}"]`);
    if (!wrapper) continue;
    const error = wrapper.querySelector('.field-error');
    error.textContent = message;
    error.hidden = false;
    const control = wrapper.querySelector('input, select, textarea');
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      control.focus();
    }
    return true;
  }
  return false;
}

/** Hides every field error in `form`. */
export function clearErrors(form) {
  for (const error of form.querySelectorAll('.field-error')) {
    error.textContent = '';
    error.hidden = true;
  }
  for (const control of form.querySelectorAll('[aria-invalid]')) control.removeAttribute('aria-invalid');
}

/** A `<select>` of `[value, label]` pairs with `selected` chosen. */
export function select(options, selected, attrs = {}) {
  const node = h('select', attrs);
  for (const [value, label] of options) {
    node.append(h('option', {value, selected: String(value) === String(selected ?? '')}, label));
  }
  return node;
}

/** A status line: `kind` is `info`, `ok` or `error`. */
export function notice(kind, ...text) {
  return h('p', {class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, ...text);
}

/** A table with `headers` (titles; `#` before one marks a column of
 * numbers) and `rows` (`<tr>` nodes). */
export function table(headers, rows, attrs = {}) {
  return h('table', attrs,
    h('thead', {}, h('tr', {}, headers.map((title) => (title.startsWith('#')
      ? h('th', {scope: 'col', class: 'num'}, title.slice(1))
      : h('th', {scope: 'col'}, title))))),
    h('tbody', {}, rows.length
      ? rows
      : h('tr', {}, h('td', {colspan: headers.length, class: 'empty'}, 'Nothing yet.'))));
}
