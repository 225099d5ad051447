// The web console as a person uses it, in Debian's headless Chromium
// through playwright-core: every scenario runs in one browser, in order
// (later ones use what earlier ones made), saves a screenshot and reports
// what it saw. The result is one JSON object on stdout:
//
//   {"scenarios": {"NAME": {"ok": true, ...facts} | {"ok": false, "error": "..."}}}
//
// Run by `host/tests/console.rs`, which asserts on the facts. Input comes
// from the environment:
//   CONSOLE_URL            the gateway, e.g. http://127.0.0.1:4000
//   CONSOLE_TOKEN          an admin token or the master key
//   CONSOLE_SCENARIOS      comma-separated names to run (default: all)
//   CONSOLE_SCREENSHOTS    where the screenshots go
//   CONSOLE_NODE_MODULES   where playwright-core is installed
//   CHROMIUM               the browser (default /usr/bin/chromium)

import {mkdirSync, rmSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.CONSOLE_NODE_MODULES, 'index.js'));
const {chromium} = require('playwright-core');

const base = process.env.CONSOLE_URL.replace(/\/$/, '');
const token = process.env.CONSOLE_TOKEN;
const shots = process.env.CONSOLE_SCREENSHOTS;
const wanted = (process.env.CONSOLE_SCENARIOS || '').split(',').filter(Boolean);
const TIMEOUT = 15000;
const AGENT = 'support';
const KEY = 'console-key';
const PROVIDER = 'openai';
const MODEL = 'gpt-4o-mini';

const UPSTREAM_KEY = 'sk-upstream-openai';
const bearer = {authorization: `Bearer ${token}`};

const tid = (id) => `[data-testid="${id}"]`;

async function shot(page, name) {
  await page.screenshot({path: path.join(shots, `${name}.png`), fullPage: true});
}

async function signIn(page, value) {
  await page.goto(`${base}/ui/`);
  await page.locator(tid('signin-token')).fill(value);
  await page.locator(tid('signin-submit')).click();
}

const scenarios = {
  async sign_in_page(page) {
    const response = await page.goto(`${base}/ui/`);
    await page.locator(tid('signin-form')).waitFor({timeout: TIMEOUT});
    const label = await page.locator('label', {hasText: 'Admin token'}).count();
    await shot(page, 'sign-in');
    return {status: response.status(), token_label: label > 0, title: await page.title()};
  },

  async wrong_token(page) {
    await signIn(page, 'llmhost-admin-not-a-real-token');
    const error = page.locator(`${tid('signin-message')} .notice.error`);
    await error.waitFor({timeout: TIMEOUT});
    await shot(page, 'sign-in-failed');
    return {message: await error.textContent(), still_signing_in: await page.locator(tid('signin-form')).isVisible()};
  },

  async sign_in(page, context) {
    // By keyboard alone: the token field has the focus, Enter submits.
    await page.goto(`${base}/ui/`);
    await page.locator(tid('signin-form')).waitFor();
    await page.keyboard.type(token);
    await page.keyboard.press('Enter');
    await page.locator(tid('nav-overview')).waitFor({timeout: TIMEOUT});
    const cookies = await context.cookies(base);
    const session = cookies.find((cookie) => cookie.name === 'llmhost_session');
    // A reload restores the session (and its CSRF token) from the cookie.
    await page.reload();
    await page.locator(tid('nav-overview')).waitFor({timeout: TIMEOUT});
    const stored = await page.evaluate(() => localStorage.length + sessionStorage.length);
    const html = await page.content();
    // The first Tab reaches the skip link; it moves the focus, not the route.
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    const skipped = await page.evaluate(() => ({focus: document.activeElement.id, hash: location.hash}));
    return {
      signed_in_as: await page.locator(tid('signed-in-as')).textContent(),
      cookie: session ? {http_only: session.httpOnly, same_site: session.sameSite, path: session.path} : null,
      token_in_page: html.includes(token),
      web_storage_items: stored,
      skip_link: skipped,
    };
  },

  async agent_and_config(page) {
    await page.goto(`${base}/ui/#/agents`);
    await page.locator(tid('agent-name')).fill(AGENT);
    await page.locator(tid('agent-description')).fill('Answers the help desk');
    await page.locator(tid('agent-create')).click();
    await page.locator(tid('agent-title')).waitFor({timeout: TIMEOUT});
    await page.locator(tid('config-add')).click();
    const form = page.locator(tid('config-form'));
    await form.locator(tid('config-provider')).selectOption(PROVIDER);
    await form.locator(`${tid('config-model')} option[value="${MODEL}"]`).waitFor({state: 'attached', timeout: TIMEOUT});
    await form.locator(tid('config-model')).selectOption(MODEL);
    await form.locator(tid('config-temperature')).fill('5');
    await form.locator(tid('config-max_tokens')).fill('256');
    await form.locator(tid('config-save')).click();
    const error = form.locator(tid('error-temperature'));
    await error.waitFor({timeout: TIMEOUT});
    // The message sits in the temperature field's own wrapper.
    const beside = await error.evaluate((node) =>
      node.closest('[data-field]').querySelector('input').dataset.testid);
    const invalid = await form.locator(tid('config-temperature')).getAttribute('aria-invalid');
    await shot(page, 'config-invalid-temperature');
    const message = await error.textContent();
    await form.locator(tid('config-temperature')).fill('0.7');
    await form.locator(tid('config-api_key')).fill(UPSTREAM_KEY);
    await form.locator(tid('config-price-input')).fill('2.5');
    await form.locator(tid('config-price-output')).fill('10');
    await form.locator(tid('config-save')).click();
    await page.locator('[data-testid^="config-row-"]').first().waitFor({timeout: TIMEOUT});
    const rows = await page.locator('[data-testid^="config-row-"]').count();
    const text = await page.locator(tid('configs')).textContent();
    const keyCell = await page.locator('[data-testid^="config-key-"]').first().textContent();
    const id = (await page.locator('[data-testid^="config-row-"]').first().getAttribute('data-testid'))
      .replace('config-row-', '');
    await page.locator(tid(`config-validate-${id}`)).click();
    const validated = page.locator(`${tid(`validate-result-${id}`)} .notice`);
    await validated.waitFor();
    await shot(page, 'agent-configs');
    return {error: message, error_beside: beside, aria_invalid: invalid, configs: rows,
      shows_config: text.includes(`${PROVIDER}/${MODEL}`) && text.includes('temperature 0.7')
        && text.includes('prices 2.5/10'),
      key_cell: keyCell, api_key_in_page: (await page.content()).includes(UPSTREAM_KEY),
      validated: await validated.textContent()};
  },

  async stale_edit(page) {
    await page.goto(`${base}/ui/#/agents/${AGENT}`);
    const first = page.locator('[data-testid^="config-row-"]').first();
    await first.waitFor();
    const id = (await first.getAttribute('data-testid')).replace('config-row-', '');
    await page.locator(tid(`config-edit-${id}`)).click();
    const form = page.locator(tid('config-form'));
    await form.waitFor();
    // Someone else changes the config while the form is open.
    const current = await (await fetch(`${base}/admin/v1/configs/${id}`, {headers: bearer})).json();
    const changed = await fetch(`${base}/admin/v1/configs/${id}`, {
      method: 'PATCH', headers: {...bearer, 'content-type': 'application/json'},
      body: JSON.stringify({updated_at: current.updated_at, max_tokens: 300}),
    });
    await form.locator(tid('config-top_p')).fill('0.9');
    await form.locator(tid('config-save')).click();
    const conflict = page.locator(tid('config-conflict'));
    await conflict.waitFor();
    await shot(page, 'config-conflict');
    const message = await conflict.textContent();
    await page.locator(tid('config-reload')).click();
    await page.locator(`${tid('config-form')} ${tid('config-max_tokens')}[value="300"]`).waitFor();
    await page.locator(`${tid('config-form')} ${tid('config-top_p')}`).fill('0.9');
    await page.locator(`${tid('config-form')} ${tid('config-save')}`).click();
    await page.locator(`${tid('agent-message')} .notice.ok`).waitFor();
    const row = page.locator(tid(`config-row-${id}`), {hasText: 'top_p 0.9'});
    await row.waitFor();
    await shot(page, 'config-saved');
    return {patch_status: changed.status, conflict: message,
      saved: (await row.textContent()).includes('max_tokens 300')};
  },

  async virtual_key(page) {
    await page.goto(`${base}/ui/#/keys`);
    await page.locator(tid('key-name')).fill(KEY);
    await page.locator(tid('key-budget')).fill('5');
    await page.locator(tid('key-rpm')).fill('60');
    await page.locator(tid('key-create')).click();
    const secret = page.locator(tid('key-secret'));
    await secret.waitFor({timeout: TIMEOUT});
    const key = (await secret.textContent()).trim();
    await page.locator(tid(`key-row-${KEY}`)).waitFor({timeout: TIMEOUT});
    const hint = (await page.locator(`${tid(`key-row-${KEY}`)} code`).textContent()).replace('…', '');
    await shot(page, 'virtual-key-created');
    const shown = (await page.content()).includes(key);
    await page.reload();
    await page.locator(tid(`key-row-${KEY}`)).waitFor({timeout: TIMEOUT});
    const afterReload = (await page.content()).includes(key);
    await page.locator(tid('nav-overview')).click();
    await page.locator(tid('nav-keys')).click();
    await page.locator(tid(`key-row-${KEY}`)).waitFor({timeout: TIMEOUT});
    const afterNavigation = (await page.content()).includes(key);
    const bar = await page.locator(`${tid(`key-budget-${KEY}`)} [role="meter"]`).count();
    await shot(page, 'virtual-keys');
    // Revoking asks once more.
    await page.locator(tid(`key-revoke-${KEY}`)).click();
    await page.locator(tid(`key-revoke-${KEY}`)).click();
    await page.locator(tid(`key-status-${KEY}`), {hasText: 'revoked'}).waitFor();
    return {
      key_length: key.length,
      key_matches_hint: hint.length > 3 && key.startsWith(hint),
      shown_once: shown,
      after_reload: afterReload,
      after_navigation: afterNavigation,
      budget_bar: bar > 0,
      status_after_revoke: (await page.locator(tid(`key-status-${KEY}`)).textContent()).trim(),
      stored: await page.evaluate(() => localStorage.length + sessionStorage.length),
    };
  },

  async playground(page) {
    await page.goto(`${base}/ui/#/playground`);
    await page.locator(tid('play-mode')).selectOption('model');
    await page.locator(tid('play-provider')).selectOption(PROVIDER);
    await page.locator(`${tid('play-model')} option[value="${MODEL}"]`).waitFor({state: 'attached', timeout: TIMEOUT});
    await page.locator(tid('play-model')).selectOption(MODEL);
    await page.locator(tid('play-prompt')).fill('Tell me about streaming.');
    // The length of the answer each time the page changes it.
    await page.locator(tid('play-output')).evaluate((node) => {
      window.answerLengths = [];
      new MutationObserver(() => window.answerLengths.push(node.textContent.length))
        .observe(node, {characterData: true, childList: true, subtree: true});
    });
    await page.locator(tid('play-send')).click();
    await page.locator(tid('play-output-tokens')).waitFor({timeout: TIMEOUT});
    const lengths = await page.evaluate(() => window.answerLengths);
    const stat = async (id) => (await page.locator(tid(id)).textContent()).trim();
    await shot(page, 'playground');
    return {
      text: await page.locator(tid('play-output')).textContent(),
      lengths,
      distinct_lengths: new Set(lengths.filter((n) => n > 0)).size,
      input_tokens: await stat('play-input-tokens'),
      output_tokens: await stat('play-output-tokens'),
      cost: await stat('play-cost'),
      ttft: await stat('play-ttft'),
      total: await stat('play-total'),
      request_id: await stat('play-request-id'),
    };
  },

  async playground_agent(page) {
    await page.goto(`${base}/ui/#/playground`);
    await page.locator(tid('play-mode')).selectOption('agent');
    await page.locator(tid('play-agent')).selectOption(AGENT);
    await page.locator(tid('play-prompt')).fill('Hello, agent.');
    await page.locator(tid('play-send')).click();
    await page.locator(tid('play-served-by')).waitFor();
    return {
      text: await page.locator(tid('play-output')).textContent(),
      served_by: (await page.locator(tid('play-served-by')).textContent()).trim(),
      request_id: (await page.locator(tid('play-request-id')).textContent()).trim(),
    };
  },

  async overview(page) {
    await page.goto(`${base}/ui/#/overview`);
    const cell = page.locator(tid(`total-provider-${PROVIDER}-requests`));
    await cell.waitFor({timeout: TIMEOUT});
    const agentCell = page.locator(tid(`total-agent-${AGENT}-requests`));
    const agentRequests = await agentCell.count() ? Number(await agentCell.textContent()) : 0;
    const points = page.locator(`[data-testid^="chart-provider-requests-point-${PROVIDER}-"]`);
    const values = await points.evaluateAll((nodes) => nodes.map((node) => Number(node.dataset.value)));
    await shot(page, 'overview');
    // The week, by day, counts the same requests.
    await page.locator(tid('range-7d')).click();
    await page.locator(`${tid('range-7d')}[aria-pressed="true"]`).waitFor();
    await page.locator(`${tid('overview')}:not([aria-busy])`).waitFor();
    const week = Number((await page.locator(tid(`total-provider-${PROVIDER}-requests`)).textContent())
      .replace(/,/g, ''));
    return {
      week_requests: week,
      requests: Number((await cell.textContent()).replace(/,/g, '')),
      point_requests: values.reduce((a, b) => a + b, 0),
      points: values.length,
      agent_section: await page.locator(tid('overview-agent')).count() > 0,
      agent_requests: agentRequests,
    };
  },

  async plugins(page) {
    await page.goto(`${base}/ui/#/plugins`);
    await page.locator(tid(`plugin-row-${PROVIDER}`)).waitFor({timeout: TIMEOUT});
    await page.locator(`[data-testid^="health-row-"]`).first().waitFor({timeout: TIMEOUT});
    await shot(page, 'plugins');
    return {
      plugins: await page.locator('[data-testid^="plugin-row-"]').count(),
      health: await page.locator('[data-testid^="health-row-"]').count(),
    };
  },

  async sign_out(page) {
    await page.goto(`${base}/ui/#/overview`);
    await page.locator(tid('sign-out')).click();
    await page.locator(tid('signin-form')).waitFor({timeout: TIMEOUT});
    const status = await page.evaluate(async () => (await fetch('/admin/v1/agents')).status);
    return {admin_status_after: status};
  },
};

async function main() {
  // Only this run's screenshots: none left from a run that failed.
  rmSync(shots, {recursive: true, force: true});
  mkdirSync(shots, {recursive: true});
  // launch() gives the browser a fresh temporary profile of its own.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const results = {};
  try {
    const context = await browser.newContext({viewport: {width: 1280, height: 800}, colorScheme: 'dark'});
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    for (const [name, run] of Object.entries(scenarios)) {
      if (wanted.length && !wanted.includes(name)) continue;
      const before = problems.length;
      try {
        results[name] = {ok: true, ...(await run(page, context))};
      } catch (error) {
        results[name] = {ok: false, error: String(error && error.message || error).split('\n')[0]};
        await shot(page, `${name}-failed`).catch(() => {});
      }
      results[name].problems = problems.slice(before);
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify({scenarios: results})}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
