// The admin API over the session cookie. The CSRF token lives in this
// module's memory only: a reload asks the server for it again
// (`GET /ui/api/session`), as the cookie itself is HttpOnly.

let csrfToken = null;
let signedOutHandler = () => {};

/** An answer that was not 2xx, with the API's error kind, message and field. */
export class ApiError extends Error {
  constructor(status, body, text) {
    const error = body && typeof body === 'object' && body.error ? body.error : {};
    super(error.message || text || `HTTP ${status}`);
    this.status = status;
    this.kind = error.kind || null;
    this.field = error.field || null;
  }
}

/** Calls `handler` when the API says the session is gone. */
export function onSignedOut(handler) {
  signedOutHandler = handler;
}

function headers(method, hasBody) {
  const result = {accept: 'application/json'};
  if (hasBody) result['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) result['x-csrf-token'] = csrfToken;
  return result;
}

async function parse(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** `method path` with `body` as JSON; the parsed answer, or throws ApiError. */
export async function call(method, path, body) {
  const hasBody = body !== undefined;
  const response = await fetch(path, {
    method,
    headers: headers(method, hasBody),
    body: hasBody ? JSON.stringify(body) : undefined,
    credentials: 'same-origin',
    cache: 'no-store',
  });
  const data = await parse(response);
  if (!response.ok) {
    const error = new ApiError(response.status, data, null);
    if (response.status === 401 && path.startsWith('/admin/')) {
      csrfToken = null;
      signedOutHandler();
    }
    throw error;
  }
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body ?? {});
export const patch = (path, body) => call('PATCH', path, body);
export const put = (path, body) => call('PUT', path, body);
export const del = (path) => call('DELETE', path);

/** `/admin/v1` + `path`, with `params` as the query (absent ones left out). */
export function admin(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, value);
  }
  const text = query.toString();
  return `/admin/v1${path}${text ? `?${text}` : ''}`;
}

/** `segment` made safe for a path. */
export const seg = encodeURIComponent;

/** The signed-in admin's name, or null when there is no session. */
export async function restoreSession() {
  try {
    const session = await call('GET', '/ui/api/session');
    csrfToken = session.csrf_token;
    return session.admin || 'admin';
  } catch (error) {
    if (error.status === 401 || error.status === 404) return null;
    throw error;
  }
}

/** Signs in with an admin token or the master key; the admin's name. */
export async function signIn(token) {
  const session = await call('POST', '/ui/api/session', {token});
  csrfToken = session.csrf_token;
  return session.admin || 'admin';
}

export async function signOut() {
  try {
    await call('DELETE', '/ui/api/session');
  } finally {
    csrfToken = null;
  }
}

/**
 * A streamed chat through the playground: calls `onText(piece)` for each
 * piece of content as it arrives and returns the request id, the timings
 * seen here and the usage the stream reported.
 */
export async function streamChat(body, onText, signal) {
  const started = performance.now();
  const response = await fetch('/admin/v1/playground/chat', {
    method: 'POST',
    headers: {...headers('POST', true), accept: 'text/event-stream'},
    body: JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  const requestId = response.headers.get('x-request-id');
  if (!response.ok) {
    const error = new ApiError(response.status, await parse(response), null);
    error.requestId = requestId;
    throw error;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let firstText = null;
  let usage = null;
  let finish = null;
  let streamError = null;
  const handle = (data) => {
    if (data === '[DONE]') return;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event.error) streamError = event.error.message || 'the stream ended with an error';
    if (event.usage) usage = event.usage;
    for (const choice of event.choices || []) {
      if (choice.finish_reason) finish = choice.finish_reason;
      const text = choice.delta && choice.delta.content;
      if (text) {
        if (firstText === null) firstText = performance.now();
        onText(text);
      }
    }
  };
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      const data = block.split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data) handle(data);
    }
  }
  const ended = performance.now();
  return {
    requestId,
    usage,
    finish,
    error: streamError,
    firstTokenMs: firstText === null ? null : firstText - started,
    totalMs: ended - started,
  };
}
