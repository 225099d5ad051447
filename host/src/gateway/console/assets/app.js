// The console's shell: the session, the navigation and the hash routes.
// Each page is a function that fills `main` and may return a cleanup
// function, run when the page is left (it drops anything the page held,
// such as a virtual key shown once).

import {onSignedOut, restoreSession, signOut} from './api.js';
import {h, notice, replace} from './dom.js';
import {signInPage} from './signin.js';
import {overviewPage} from './overview.js';
import {agentPage, agentsPage} from './agents.js';
import {keysPage} from './keys.js';
import {playgroundPage} from './playground.js';
import {pluginsPage} from './plugins.js';

const PAGES = [
  {path: 'overview', title: 'Overview', page: overviewPage},
  {path: 'agents', title: 'Agents', page: agentsPage},
  {path: 'keys', title: 'Virtual keys', page: keysPage},
  {path: 'playground', title: 'Playground', page: playgroundPage},
  {path: 'plugins', title: 'Plugins', page: pluginsPage},
];

const root = document.getElementById('app');
let admin = null;
let leave = null;
let shown = 0;

function route() {
  const [path, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return {path: path || 'overview', rest: rest.map(decodeURIComponent)};
}

function shell(current) {
  const nav = h('nav', {'aria-label': 'Console'},
    h('ul', {}, PAGES.map(({path, title}) => h('li', {},
      h('a', {href: `#/${path}`, testid: `nav-${path}`,
        'aria-current': path === current ? 'page' : undefined}, title)))));
  const signOutButton = h('button', {type: 'button', class: 'secondary', testid: 'sign-out',
    on: {click: async () => {
      signOutButton.disabled = true;
      try {
        await signOut();
      } finally {
        admin = null;
        location.hash = '#/';
        render();
      }
    }}}, 'Sign out');
  const main = h('main', {id: 'main', tabindex: '-1'});
  replace(root,
    h('header', {class: 'top'},
      h('a', {class: 'brand', href: '#/overview'}, h('span', {class: 'logo', 'aria-hidden': 'true'}), 'llmhost'),
      nav,
      h('div', {class: 'who'}, h('span', {testid: 'signed-in-as'}, admin), signOutButton)),
    main);
  return main;
}

async function render() {
  if (leave) {
    leave();
    leave = null;
  }
  shown += 1;
  const mine = shown;
  if (!admin) {
    signInPage(root, (name) => {
      admin = name;
      render();
    });
    return;
  }
  const {path, rest} = route();
  const main = shell(path);
  const entry = PAGES.find((page) => page.path === path);
  let page = entry ? entry.page : null;
  let title = entry ? entry.title : 'Not found';
  if (path === 'agents' && rest.length && rest[0]) {
    page = (node) => agentPage(node, rest[0]);
    title = `Agent ${rest[0]}`;
  }
  document.title = `${title} · llmhost console`;
  if (!page) {
    replace(main, h('h1', {}, 'Not found'), notice('error', 'There is no such page.'));
    return;
  }
  try {
    const cleanup = await page(main);
    if (mine === shown) leave = typeof cleanup === 'function' ? cleanup : null;
    else if (typeof cleanup === 'function') cleanup();
  } catch (error) {
    if (mine === shown && admin) {
      main.append(notice('error', `Could not load this page: ${error.message}`));
    }
  }
}

onSignedOut(() => {
  if (admin) {
    admin = null;
    render();
  }
});

window.addEventListener('hashchange', render);

// The hash holds the route, so the skip link moves the focus itself.
document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault();
  const main = document.getElementById('main');
  if (main) main.focus();
});

async function start() {
  try {
    admin = await restoreSession();
  } catch {
    admin = null;
  }
  render();
}

start();
