// Starling admin console: tabs, live views polled from the node's JSON APIs,
// and the operator's actions (kick, clear, user management), each sent with
// the session's CSRF token. Plain browser JavaScript, no build step.
'use strict';

const POLL_CLUSTER_MS = 1000;
const POLL_TAB_MS = 2000;
const USERS_PAGE = 25;
const SESSIONS_LIMIT = 200;
const HISTORY_SHOWN = 100;

const app = {
  csrf: '',
  user: '',
  node: '',
  tab: 'cluster',
  usersOffset: 0,
  tabTimer: 0,
  lastClusterOk: 0,
};

// ---------------------------------------------------------------- helpers

const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element; children are nodes or text (never parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') el.className = value;
    else if (name === 'text') el.textContent = value;
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Sets text only when it changed, so that polling does not disturb selection or readers. */
function setText(el, text) {
  const value = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== value) el.textContent = value;
}

function setAttr(el, name, value) {
  const wanted = value === null || value === undefined ? null : String(value);
  if (el.getAttribute(name) !== wanted) {
    if (wanted === null) el.removeAttribute(name);
    else el.setAttribute(name, wanted);
  }
}

/** Replaces an element's children only when their rendered form changed. */
function setChildren(el, key, ...children) {
  if (el.dataset.render === key) return;
  el.dataset.render = key;
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

const numberFormat = new Intl.NumberFormat();
const fmtNum = (n) => (typeof n === 'number' && Number.isFinite(n) ? numberFormat.format(n) : '–');

function fmtPercent(ratio) {
  if (typeof ratio !== 'number' || !Number.isFinite(ratio)) return '–';
  return `${(ratio * 100).toFixed(1)} %`;
}

/** A short human duration: "0.4 s", "42 s", "5 min", "3 h 12 min", "2 d 4 h". */
function fmtDuration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 1000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hrs = Math.floor(m / 60);
  if (hrs < 24) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

const fmtAgo = (epochMs) => (epochMs > 0 ? `${fmtDuration(Math.max(0, Date.now() - epochMs))} ago` : '–');

/** The time of day for today's events, the date and time for older ones. */
function fmtClock(epochMs) {
  const stamp = fmtStamp(epochMs);
  const sameDay = new Date().toDateString() === new Date(epochMs).toDateString();
  return sameDay ? stamp.slice(11) : stamp;
}

const pad2 = (n) => String(n).padStart(2, '0');

/** Local date and time as 2026-03-14 09:26:53: sortable, unambiguous in every locale. */
function fmtStamp(epochMs) {
  if (!(epochMs > 0)) return '';
  const d = new Date(epochMs);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/**
 * Node ids are 64-bit hashes, beyond what a JavaScript number holds exactly:
 * quote them before parsing so that they are shown and compared exactly.
 */
function parseJsonKeepingIds(text) {
  const quoted = text.replace(/"(id|this_node|leader|node)":\s*(\d{16,})/g, '"$1":"$2"');
  return JSON.parse(quoted);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** One call to the node's API; state-changing calls carry the CSRF token. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = app.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    // The session expired or the node restarted: sign in again.
    window.location.assign('/admin/login');
    throw new ApiError(401, 'Signed out');
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = parseJsonKeepingIds(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = (data && data.error) || text || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

function toast(message, tone = 'ok') {
  const el = h('div', { class: 'toast', dataset: { tone } }, message);
  $('#toasts').append(el);
  setTimeout(() => el.remove(), tone === 'error' ? 7000 : 4000);
}

/** Keeps a table's rows by key: rows (and their buttons) survive a refresh. */
function syncRows(tbody, items, keyOf, build, update) {
  const old = new Map();
  for (const tr of tbody.rows) old.set(tr.dataset.key, tr);
  let previous = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let tr = old.get(key);
    if (tr) {
      old.delete(key);
    } else {
      tr = build(item);
      tr.dataset.key = key;
    }
    update(tr, item);
    const wanted = previous ? previous.nextElementSibling : tbody.firstElementChild;
    if (tr !== wanted) tbody.insertBefore(tr, wanted);
    previous = tr;
  }
  for (const tr of old.values()) tr.remove();
}

function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ---------------------------------------------------------------- dialogs

/** Asks before something that cannot be undone; resolves to true on confirm. */
function confirmAction({ title, text, action }) {
  const dialog = $('#confirm-dialog');
  setText($('#confirm-title'), title);
  setText($('#confirm-text'), text);
  setText($('#confirm-ok'), action);
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

function wireFormDialog(dialog) {
  for (const button of dialog.querySelectorAll('[data-close]')) {
    button.addEventListener('click', () => dialog.close());
  }
}

// ------------------------------------------------------------ table heads

/**
 * The columns of each data table, in order: a title, or [title, class]
 * where `num` right-aligns figures and `actions` is the column of a row's
 * buttons (its title is for screen readers only).
 */
const COLUMNS = {
  'members-table': ['State', 'Member', 'Client address', 'HTTP address', ['Incarnation', 'num'],
    ['Sessions', 'num'], 'Joined', 'Peer link', ['Send queue', 'num'], 'View'],
  'sessions-table': ['JID', 'Presence', ['Priority', 'num'], 'Node', ['Actions', 'actions']],
  'caches-table': ['Cache', 'Kind', ['Size', 'num'], ['Limit', 'num'], 'Fill', ['Hits', 'num'],
    ['Misses', 'num'], ['Evictions', 'num'], ['Hit ratio', 'num'], ['Actions', 'actions']],
  's2s-table': ['Remote domain', 'Local domain', 'Direction', 'Authentication', 'TLS', 'Bidi',
    'Since', ['Stanzas in', 'num'], ['Stanzas out', 'num'], ['Unconfirmed', 'num']],
  'users-table': ['Username', 'Role', 'Created', ['Actions', 'actions']],
};

/** Writes each data table's `<thead>` from COLUMNS. */
function renderTableHeads() {
  for (const [id, columns] of Object.entries(COLUMNS)) {
    const cells = columns.map((column) => {
      const [title, cls] = Array.isArray(column) ? column : [column];
      const label = cls === 'actions' ? h('span', { class: 'visually-hidden', text: title }) : title;
      return h('th', { scope: 'col', class: cls }, label);
    });
    document.getElementById(id).prepend(h('thead', {}, h('tr', {}, cells)));
  }
}

// ---------------------------------------------------------------- tabs

const TABS = ['cluster', 'sessions', 'caches', 'federation', 'users'];

function showTab(name, { focus = false } = {}) {
  if (!TABS.includes(name)) name = 'cluster';
  app.tab = name;
  for (const tab of TABS) {
    const button = $(`#tab-${tab}`);
    const selected = tab === name;
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`#panel-${tab}`).hidden = !selected;
    if (selected && focus) button.focus();
  }
  if (window.location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  clearTimeout(app.tabTimer);
  refreshTab();
}

/** Polls the open tab's API (the cluster view has its own loop). */
async function refreshTab() {
  clearTimeout(app.tabTimer);
  const tab = app.tab;
  try {
    if (tab === 'sessions') await loadSessions();
    else if (tab === 'caches') await loadCaches();
    else if (tab === 'federation') await loadFederation();
    else if (tab === 'users') await loadUsers();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) console.warn(error);
  }
  if (app.tab === tab && (tab === 'sessions' || tab === 'caches' || tab === 'federation')) {
    app.tabTimer = setTimeout(refreshTab, POLL_TAB_MS);
  }
}

function wireTabs() {
  const list = $('[role="tablist"]');
  for (const tab of TABS) {
    $(`#tab-${tab}`).addEventListener('click', () => showTab(tab));
  }
  list.addEventListener('keydown', (event) => {
    const index = TABS.indexOf(app.tab);
    let next = null;
    if (event.key === 'ArrowRight') next = TABS[(index + 1) % TABS.length];
    else if (event.key === 'ArrowLeft') next = TABS[(index + TABS.length - 1) % TABS.length];
    else if (event.key === 'Home') next = TABS[0];
    else if (event.key === 'End') next = TABS[TABS.length - 1];
    if (next) {
      event.preventDefault();
      showTab(next, { focus: true });
    }
  });
  window.addEventListener('hashchange', () => showTab(window.location.hash.slice(1)));
}

// ---------------------------------------------------------------- cluster

const STATE_WORDS = {
  up: 'is up',
  suspect: 'stopped answering (suspect)',
  down: 'is down',
  leaving: 'left the cluster',
};

function statePill(state) {
  return h('span', { class: 'pill', dataset: { state } }, state);
}

async function pollCluster() {
  try {
    const status = await api('GET', '/api/cluster');
    app.lastClusterOk = Date.now();
    renderCluster(status);
    setLive('ok', 'Live');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    setLive('error', `Cannot reach ${app.node || 'the node'}: retrying`);
  }
  setTimeout(pollCluster, document.hidden ? 5 * POLL_CLUSTER_MS : POLL_CLUSTER_MS);
}

function setLive(state, text) {
  const live = $('#live');
  setAttr(live, 'data-live', state);
  setText($('#live-text'), text);
}

function renderCluster(status) {
  const members = Array.isArray(status.members) ? status.members : [];
  const byId = new Map(members.map((m) => [String(m.id), m]));
  const up = members.filter((m) => m.state === 'up').length;
  const counted = members.filter((m) => m.member !== false);
  const leader = status.leader === null || status.leader === undefined ? null : String(status.leader);
  const senior = leader ? byId.get(leader) : null;
  const quorum = status.quorum !== undefined ? Boolean(status.quorum) : leader !== null;
  const routing = status.routing || {};

  renderBanners(status, quorum);

  setText($('#t-members'), `${up} of ${members.length}`);
  const notUp = members.filter((m) => m.state !== 'up').map((m) => `${m.name} ${m.state}`);
  setText($('#t-members-sub'), notUp.length ? notUp.join(', ') : `${counted.length} in the membership`);
  setAttr($('#tile-members'), 'data-tone',
    members.some((m) => m.state === 'down') ? 'bad' : notUp.length ? 'warn' : null);
  setText($('#t-senior'), senior ? senior.name : quorum ? `#${leader}` : 'none');
  setText($('#t-term'), quorum ? `Raft term ${fmtNum(status.term)}` : 'No Raft quorum');
  setAttr($('#t-senior').parentElement, 'data-tone', quorum ? null : 'bad');
  setText($('#t-sessions'), fmtNum(status.cluster_sessions));
  setText($('#t-sessions-sub'), `${fmtNum(status.local_sessions)} on ${status.this_name || 'this node'}`);
  setText($('#t-routed'), fmtNum(routing.routed_remote));
  setText($('#t-routing-sub'),
    `${fmtNum(routing.lookup_retries)} lookup retries · ${fmtNum(routing.lookup_misses)} misses`);
  setText($('#t-ready'), status.ready ? 'Ready' : 'Starting');
  setAttr($('#t-ready').parentElement, 'data-tone', status.ready ? null : 'warn');
  const links = LINK_SECURITY[status.link_security];
  setText($('#t-protocol'),
    `protocol v${status.protocol_version ?? '–'}${links ? ` · ${links} links` : ''}`);

  const thisNode = String(status.this_node);
  syncRows($('#members-table tbody'), members, (m) => m.id, buildMemberRow,
    (tr, m) => updateMemberRow(tr, m, thisNode));
  renderHistory(Array.isArray(status.history) ? status.history : []);
  renderCounters(status.counters || {});
  recordLoad(members);
  renderGraphs();
}

// ---------------------------------------------------------------- graphs

// Samples kept: one per poll, five minutes of them.
const GRAPH_SAMPLES = Math.round(300000 / POLL_CLUSTER_MS);
const GRAPH_COLOURS = ['#3451b2', '#c2410c', '#15803d', '#a21caf', '#0e7490', '#b45309', '#be123c', '#4d7c0f'];

// Per member name: [{ at, sessions, stanzas (a total), rate (per second) }].
const loadHistory = new Map();

function recordLoad(members) {
  const at = Date.now();
  for (const m of members) {
    const samples = loadHistory.get(m.name) || [];
    const last = samples[samples.length - 1];
    const total = Number(m.client_stanzas) || 0;
    const seconds = last ? (at - last.at) / 1000 : 0;
    // A restarted member counts from zero again: no negative rate.
    const rate = last && seconds > 0 && total >= last.stanzas ? (total - last.stanzas) / seconds : 0;
    samples.push({ at, sessions: Number(m.sessions) || 0, stanzas: total, rate, down: m.state === 'down' });
    if (samples.length > GRAPH_SAMPLES) samples.shift();
    loadHistory.set(m.name, samples);
  }
}

function graphLine(svg, samples, value, top, now, colour) {
  const points = samples.map((s) => {
    const x = 300 - ((now - s.at) / (GRAPH_SAMPLES * POLL_CLUSTER_MS)) * 300;
    const y = 98 - (value(s) / top) * 94;
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', points.join(' '));
  line.setAttribute('stroke', colour);
  return line;
}

function renderGraph(id, value, nowText) {
  const svg = document.getElementById(id);
  const now = Date.now();
  const names = [...loadHistory.keys()].sort();
  const top = Math.max(1, ...names.flatMap((n) => loadHistory.get(n).map(value)));
  svg.replaceChildren(...names.map((name, i) =>
    graphLine(svg, loadHistory.get(name), value, top, now, GRAPH_COLOURS[i % GRAPH_COLOURS.length])));
  svg.dataset.lines = String(names.length);
  svg.dataset.top = String(top);
  const latest = names.map((n) => loadHistory.get(n).slice(-1)[0]).filter(Boolean);
  setText(document.getElementById(nowText), `now ${fmtNum(Math.round(latest.reduce((sum, s) => sum + value(s), 0)))} in all, top of scale ${fmtNum(Math.round(top))}`);
}

function renderGraphs() {
  renderGraph('graph-sessions', (s) => s.sessions, 'graph-sessions-now');
  renderGraph('graph-stanzas', (s) => s.rate, 'graph-stanzas-now');
  const names = [...loadHistory.keys()].sort();
  const legend = $('#graph-legend');
  const key = names.join('|');
  if (legend.dataset.render !== key) {
    legend.dataset.render = key;
    legend.replaceChildren(...names.map((name, i) =>
      h('li', { style: `--swatch: ${GRAPH_COLOURS[i % GRAPH_COLOURS.length]}` }, name)));
  }
}

// How peer links are protected (`link_security` in /api/cluster).
const LINK_SECURITY = { tls: 'TLS', tls_ca: 'TLS (CA)', plaintext: 'clear-text' };

function renderBanners(status, quorum) {
  const banners = [];
  if (status.link_security === 'plaintext') {
    banners.push(['warn', 'Clear-text cluster links.',
      `${status.this_name || 'This node'} runs with [cluster] insecure_plaintext = true: anyone ` +
      'on the network path between members can read and alter chat. Remove the setting on every ' +
      'member to get TLS.']);
  }
  if (!quorum) {
    banners.push(['error', 'No senior member.',
      `${status.this_name || 'This node'} sees no Raft quorum. Chat keeps working; ` +
      'membership changes wait until a majority of members is back.']);
  }
  const differ = Array.isArray(status.disagreement) ? status.disagreement : [];
  if (differ.length) {
    banners.push(['warn', 'Views differ.',
      `${differ.join(', ')} ${differ.length === 1 ? 'sees' : 'see'} a different senior member or ` +
      `member list than ${status.this_name || 'this node'}. This settles within seconds after a ` +
      'change; if it lasts, check the peer links.']);
  }
  if (status.ready === false) {
    banners.push(['info', 'Not ready.',
      'This node does not hold the session directory yet and refuses logins.']);
  }
  const key = JSON.stringify(banners);
  const box = $('#cluster-banners');
  setChildren(box, key, banners.map(([tone, title, text]) =>
    h('div', { class: 'banner', role: tone === 'info' ? 'status' : 'alert', dataset: { tone } },
      h('span', { class: 'banner-icon', 'aria-hidden': 'true' }, tone === 'info' ? 'ℹ' : '⚠'),
      h('div', {}, h('strong', {}, title), ' ', text))));
}

function buildMemberRow() {
  const tr = h('tr');
  for (const cls of ['', 'nowrap', 'mono', 'mono', 'num mono muted', 'num', 'nowrap', 'nowrap', 'num', '']) {
    tr.append(h('td', { class: cls || null }));
  }
  return tr;
}

function updateMemberRow(tr, m, thisNode) {
  const [state, name, c2s, http, incarnation, sessions, joined, link, queue, view] = tr.cells;
  const self = String(m.id) === thisNode;
  setAttr(tr, 'data-state', m.state);
  setAttr(tr, 'data-node', m.name);
  setChildren(state, m.state, statePill(m.state));
  setChildren(name, `${m.name}|${m.senior}|${self}|${m.member}|${m.cluster_addr}|${m.id}`,
    h('div', { class: 'cell-main' }, m.name || '(unnamed)',
      m.senior ? h('span', { class: 'badge senior', title: 'Raft leader' }, 'senior') : null,
      self ? h('span', { class: 'badge self', title: 'The node serving this page' }, 'this node') : null,
      m.member === false ? h('span', { class: 'badge warn', title: 'Linked but not (yet) in the committed membership' }, 'joining') : null),
    h('div', { class: 'cell-sub mono', title: 'Node id and cluster (peer) address' },
      `id ${m.id} · ${m.cluster_addr || '–'}`));
  setText(c2s, m.c2s_addr || '–');
  if (m.http_addr) {
    setChildren(http, m.http_addr,
      h('a', { href: `${window.location.protocol}//${m.http_addr}/admin`, title: `Open ${m.name}'s console` },
        m.http_addr));
  } else {
    setChildren(http, '', '–');
  }
  setText(incarnation, m.incarnation ? m.incarnation : '–');
  setText(sessions, fmtNum(m.sessions));
  setText(joined, m.joined_at_ms > 0 ? fmtAgo(m.joined_at_ms) : '–');
  setAttr(joined, 'title', fmtStamp(m.joined_at_ms) || null);
  if (self) {
    setChildren(link, 'self', h('span', { class: 'muted' }, 'this node'));
    setText(queue, '–');
    setChildren(view, 'self', h('span', { class: 'muted' }, '–'));
    return;
  }
  if (m.link) {
    setChildren(link, `link|${fmtDuration(m.link.established_ms_ago)}|${fmtDuration(m.link.heard_ms_ago)}`,
      h('div', {}, `up ${fmtDuration(m.link.established_ms_ago)}`),
      h('div', { class: 'cell-sub' }, `heard ${fmtDuration(m.link.heard_ms_ago)} ago`));
    setText(queue, fmtNum(m.link.queue_depth));
    queue.classList.toggle('hot', m.link.queue_depth > 1000);
  } else {
    setChildren(link, 'nolink', h('span', { class: 'muted' }, 'no link'));
    setText(queue, '–');
    queue.classList.remove('hot');
  }
  if (m.state === 'down' || m.state === 'leaving') {
    // No recent word from the peer: there is no view to compare.
    setChildren(view, 'none', h('span', { class: 'muted' }, '–'));
    return;
  }
  setChildren(view, String(m.view_agrees),
    m.view_agrees
      ? h('span', { class: 'agree' }, 'agrees')
      : h('span', { class: 'differ' }, 'differs'));
}

function renderHistory(events) {
  const body = $('#history tbody');
  // "Came back up" only for a member that was seen away before.
  const away = new Set();
  const described = events.map((e) => {
    let words = STATE_WORDS[e.state] || e.state;
    if (e.note) return { ...e, words: e.note };
    if (e.state === 'up' && away.has(String(e.node))) words = 'came back up';
    if (e.state === 'up') away.delete(String(e.node));
    else away.add(String(e.node));
    return { ...e, words };
  });
  const shown = described.slice(-HISTORY_SHOWN).reverse();
  $('#history-empty').hidden = shown.length > 0;
  const key = shown.map((e) => `${e.at_ms}|${e.node}|${e.state}`).join(';');
  if (body.dataset.render !== key) {
    body.dataset.render = key;
    body.replaceChildren(...shown.map((e) =>
      h('tr', { dataset: { node: e.name, state: e.state } },
        h('td', { class: 'mono muted nowrap' },
          h('time', { datetime: new Date(e.at_ms).toISOString(), title: fmtStamp(e.at_ms) }, fmtClock(e.at_ms))),
        h('td', {}, statePill(e.state)),
        h('td', {}, e.note ? e.words : [h('strong', {}, e.name || `#${e.node}`), ' ', e.words]),
        h('td', { class: 'num muted ago', dataset: { at: e.at_ms } }, fmtAgo(e.at_ms)))));
  } else {
    for (const ago of body.querySelectorAll('.ago')) setText(ago, fmtAgo(Number(ago.dataset.at)));
  }
}

const COUNTERS = [
  ['forwarded', 'Stanzas forwarded to peers'],
  ['received', 'Stanzas received from peers'],
  ['forward_failures', 'Forwards refused (link down or full)'],
  ['deltas_sent', 'Directory deltas sent'],
  ['snapshots_sent', 'Directory snapshots sent'],
  ['resyncs', 'Directory resyncs'],
  ['invalidations', 'Cache invalidations'],
  ['invalidation_timeouts', 'Invalidation timeouts'],
];

function renderCounters(counters) {
  const dl = $('#counters');
  if (!dl.childElementCount) {
    for (const [key, label] of COUNTERS) {
      dl.append(h('dt', {}, label), h('dd', { dataset: { counter: key } }, '–'));
    }
  }
  for (const [key] of COUNTERS) {
    const dd = dl.querySelector(`[data-counter="${key}"]`);
    setText(dd, fmtNum(counters[key]));
    dd.classList.toggle('hot', (key.endsWith('failures') || key.endsWith('timeouts')) && counters[key] > 0);
  }
}

// ---------------------------------------------------------------- sessions

async function loadSessions() {
  const search = $('#session-search').value.trim();
  const query = new URLSearchParams({ limit: String(SESSIONS_LIMIT) });
  if (search) query.set('search', search);
  const data = await api('GET', `/api/sessions?${query}`);
  const sessions = Array.isArray(data.local) ? data.local : [];
  setText($('#s-local'), fmtNum(data.local_count));
  setText($('#s-cluster'), fmtNum(data.cluster_count));
  setText($('#sessions-shown'), search
    ? `${fmtNum(sessions.length)} matching “${search}”`
    : sessions.length < data.local_count
      ? `First ${fmtNum(sessions.length)} of ${fmtNum(data.local_count)}`
      : `${fmtNum(sessions.length)} in all`);
  $('#sessions-empty').hidden = sessions.length > 0;
  setText($('#sessions-empty'), search ? `No session on this node matches “${search}”.` : 'No client is connected to this node.');
  syncRows($('#sessions-table tbody'), sessions, (s) => s.jid, buildSessionRow, updateSessionRow);
}

function buildSessionRow(session) {
  const kick = h('button', {
    type: 'button',
    class: 'btn btn-small btn-outline-danger',
    'aria-label': `Kick ${session.jid}`,
    onclick: () => kickSession(session.jid),
  }, 'Kick');
  return h('tr', {}, h('td', { class: 'mono' }), h('td'), h('td', { class: 'num' }), h('td'),
    h('td', { class: 'actions' }, kick));
}

function updateSessionRow(tr, s) {
  const [jid, presence, priority, node] = tr.cells;
  setAttr(tr, 'data-jid', s.jid);
  setText(jid, s.jid);
  setChildren(presence, String(s.available), s.available
    ? h('span', { class: 'pill', dataset: { state: 'up' } }, 'available')
    : h('span', { class: 'pill', dataset: { state: 'leaving' } }, 'unavailable'));
  setText(priority, s.priority ?? 0);
  setText(node, s.node || app.node);
}

async function kickSession(jid) {
  const ok = await confirmAction({
    title: 'Kick this session?',
    text: `${jid} is disconnected at once (stream error policy-violation). The client may log in again.`,
    action: 'Kick',
  });
  if (!ok) return;
  try {
    await api('POST', '/api/sessions/kick', { jid });
    toast(`Kicked ${jid}`);
  } catch (error) {
    toast(`Could not kick ${jid}: ${error.message}`, 'error');
  }
  refreshTab();
}

// ---------------------------------------------------------------- caches

async function loadCaches() {
  const caches = await api('GET', '/api/caches');
  const list = Array.isArray(caches) ? caches : [];
  $('#caches-empty').hidden = list.length > 0;
  syncRows($('#caches-table tbody'), list, (c) => c.name, buildCacheRow, updateCacheRow);
}

function buildCacheRow(cache) {
  const clear = cache.kind === 'replicated'
    ? h('button', {
      type: 'button',
      class: 'btn btn-small',
      disabled: true,
      title: 'A replicated cache is the cluster state itself; it is never cleared by hand',
      'aria-label': `Clear ${cache.name} (not possible for a replicated cache)`,
    }, 'Clear')
    : h('button', {
      type: 'button',
      class: 'btn btn-small',
      'aria-label': `Clear ${cache.name}`,
      onclick: (event) => clearCache(cache.name, event.currentTarget),
    }, 'Clear');
  const fill = h('div', { class: 'bar' }, h('span'));
  const ratio = h('span', { class: 'ratio' }, h('span', { class: 'ratio-text' }),
    h('span', { class: 'bar', 'aria-hidden': 'true' }, h('span')));
  return h('tr', {},
    h('td', { class: 'mono cell-main' }), h('td'), h('td', { class: 'num' }), h('td', { class: 'num' }),
    h('td', {}, fill), h('td', { class: 'num' }), h('td', { class: 'num' }), h('td', { class: 'num' }),
    h('td', { class: 'num' }, ratio), h('td', { class: 'actions' }, clear));
}

function updateCacheRow(tr, c) {
  const [name, kind, size, limit, fill, hits, misses, evictions, ratio] = tr.cells;
  setAttr(tr, 'data-cache', c.name);
  setText(name, c.name);
  setChildren(kind, c.kind, h('span', { class: 'pill plain', dataset: { kind: c.kind } }, c.kind));
  setText(size, fmtNum(c.size));
  setText(limit, c.limit > 0 ? fmtNum(c.limit) : 'none');
  const bar = fill.querySelector('.bar');
  const used = c.limit > 0 ? Math.min(1, c.size / c.limit) : 0;
  bar.hidden = !(c.limit > 0);
  bar.querySelector('span').style.width = `${(used * 100).toFixed(1)}%`;
  setAttr(bar, 'data-tone', used >= 0.95 ? 'warn' : null);
  setAttr(bar, 'title', c.limit > 0 ? `${(used * 100).toFixed(1)} % full` : null);
  setText(hits, fmtNum(c.hits));
  setText(misses, fmtNum(c.misses));
  setText(evictions, fmtNum(c.evictions));
  const lookups = (c.hits || 0) + (c.misses || 0);
  setText(ratio.querySelector('.ratio-text'), lookups ? fmtPercent(c.hit_ratio) : '–');
  ratio.querySelector('.bar > span').style.width = `${((lookups ? c.hit_ratio : 0) * 100).toFixed(1)}%`;
}

async function clearCache(name, button) {
  button.disabled = true;
  try {
    await api('POST', `/api/caches/${encodeURIComponent(name)}/clear`);
    toast(`Cleared ${name}`);
  } catch (error) {
    toast(`Could not clear ${name}: ${error.message}`, 'error');
  } finally {
    button.disabled = false;
  }
  refreshTab();
}

// ---------------------------------------------------------------- federation

const AUTHENTICATION_WORDS = { external: 'SASL EXTERNAL', dialback: 'dialback' };

async function loadFederation() {
  const answer = await api('GET', '/api/s2s');
  const list = answer && Array.isArray(answer.streams) ? answer.streams : [];
  $('#s2s-empty').hidden = list.length > 0;
  syncRows($('#s2s-table tbody'), list, (s) => s.id, buildStreamRow, updateStreamRow);
}

function buildStreamRow() {
  return h('tr', {},
    h('td', { class: 'mono cell-main' }), h('td', { class: 'mono' }), h('td'), h('td'), h('td'), h('td'),
    h('td'), h('td', { class: 'num' }), h('td', { class: 'num' }), h('td', { class: 'num' }));
}

function updateStreamRow(tr, s) {
  const [remote, local, direction, auth, tls, bidi, since, stanzasIn, stanzasOut, unconfirmed] = tr.cells;
  const pairs = Array.isArray(s.pairs) && s.pairs.length ? s.pairs : [s];
  setText(remote, pairs.map((p) => p.remote).join(', '));
  setText(local, [...new Set(pairs.map((p) => p.local))].join(', '));
  setText(direction, s.direction === 'in' ? 'in' : 'out');
  setText(auth, [...new Set(pairs.map((p) => AUTHENTICATION_WORDS[p.authentication] || p.authentication))].join(', '));
  setText(tls, s.tls ? 'yes' : 'no');
  setText(bidi, s.bidi ? 'yes' : 'no');
  setText(since, fmtAgo(s.since_ms));
  setAttr(since, 'title', s.since_ms > 0 ? fmtStamp(s.since_ms) : null);
  setText(stanzasIn, fmtNum(s.stanzas_in));
  setText(stanzasOut, fmtNum(s.stanzas_out));
  setText(unconfirmed, fmtNum(s.unconfirmed));
}

// ---------------------------------------------------------------- users

async function loadUsers() {
  const search = $('#user-search').value.trim();
  const query = new URLSearchParams({ limit: String(USERS_PAGE), offset: String(app.usersOffset) });
  if (search) query.set('search', search);
  const data = await api('GET', `/api/users?${query}`);
  const users = Array.isArray(data.users) ? data.users : [];
  const total = Number(data.total) || 0;
  if (!users.length && app.usersOffset > 0 && total > 0) {
    // The last page emptied (deletions): step back to one that has users.
    app.usersOffset = Math.max(0, Math.floor((total - 1) / USERS_PAGE) * USERS_PAGE);
    return loadUsers();
  }
  $('#users-empty').hidden = users.length > 0;
  setText($('#users-empty'), search ? `No user matches “${search}”.` : 'There are no users yet.');
  setText($('#users-range'), total
    ? `${fmtNum(app.usersOffset + 1)}–${fmtNum(app.usersOffset + users.length)} of ${fmtNum(total)}`
    : '');
  $('#users-prev').disabled = app.usersOffset === 0;
  $('#users-next').disabled = app.usersOffset + users.length >= total;
  syncRows($('#users-table tbody'), users, (u) => u.username, buildUserRow, updateUserRow);
}

function buildUserRow(user) {
  return h('tr', {},
    h('td', { class: 'mono cell-main' }), h('td'), h('td'),
    h('td', { class: 'actions' },
      h('button', {
        type: 'button',
        class: 'btn btn-small',
        'aria-label': `Reset the password of ${user.username}`,
        onclick: () => openPasswordDialog(user.username),
      }, 'Reset password'),
      h('button', {
        type: 'button',
        class: 'btn btn-small btn-outline-danger',
        'aria-label': `Delete ${user.username}`,
        onclick: () => deleteUser(user.username),
      }, 'Delete')));
}

function updateUserRow(tr, u) {
  const [name, role, created] = tr.cells;
  setAttr(tr, 'data-user', u.username);
  setText(name, u.username);
  setChildren(role, String(u.admin), u.admin
    ? h('span', { class: 'pill plain', dataset: { kind: 'replicated' } }, 'admin')
    : h('span', { class: 'muted' }, 'user'));
  setText(created, u.created_at_ms > 0 ? fmtStamp(u.created_at_ms) : '–');
}

async function deleteUser(username) {
  const ok = await confirmAction({
    title: `Delete ${username}?`,
    text: `The account ${username}, its roster and its offline messages are removed for good.`,
    action: 'Delete',
  });
  if (!ok) return;
  try {
    await api('DELETE', `/api/users/${encodeURIComponent(username)}`);
    toast(`Deleted ${username}`);
  } catch (error) {
    toast(`Could not delete ${username}: ${error.message}`, 'error');
  }
  refreshTab();
}

function openUserDialog() {
  const dialog = $('#user-dialog');
  $('#user-form').reset();
  setText($('#user-form-error'), '');
  dialog.showModal();
}

async function submitUser(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const submit = form.querySelector('[type="submit"]');
  const username = form.elements.username.value.trim();
  const body = {
    username,
    password: form.elements.password.value,
    admin: form.elements.admin.checked,
  };
  submit.disabled = true;
  try {
    await api('POST', '/api/users', body);
    $('#user-dialog').close();
    toast(`Added ${username}${body.admin ? ' (administrator)' : ''}`);
    refreshTab();
  } catch (error) {
    setText($('#user-form-error'), error.message);
  } finally {
    submit.disabled = false;
  }
}

function openPasswordDialog(username) {
  const dialog = $('#password-dialog');
  $('#password-form').reset();
  $('#password-form').dataset.user = username;
  // For password managers: which account the new password belongs to.
  $('#password-form').elements.username.value = username;
  setText($('#password-dialog-user'), `The new password for ${username}; the old one stops working at once.`);
  setText($('#password-form-error'), '');
  dialog.showModal();
}

async function submitPassword(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = form.dataset.user;
  const submit = form.querySelector('[type="submit"]');
  submit.disabled = true;
  try {
    await api('POST', `/api/users/${encodeURIComponent(username)}/password`,
      { password: form.elements.password.value });
    $('#password-dialog').close();
    toast(`Password of ${username} changed`);
  } catch (error) {
    setText($('#password-form-error'), error.message);
  } finally {
    submit.disabled = false;
  }
}

// ---------------------------------------------------------------- start

async function start() {
  renderTableHeads();
  wireTabs();
  wireFormDialog($('#user-dialog'));
  wireFormDialog($('#password-dialog'));
  $('#add-user').addEventListener('click', openUserDialog);
  $('#user-form').addEventListener('submit', submitUser);
  $('#password-form').addEventListener('submit', submitPassword);
  $('#session-search').addEventListener('input', debounce(() => refreshTab(), 250));
  $('#user-search').addEventListener('input', debounce(() => {
    app.usersOffset = 0;
    refreshTab();
  }, 250));
  $('#users-prev').addEventListener('click', () => {
    app.usersOffset = Math.max(0, app.usersOffset - USERS_PAGE);
    refreshTab();
  });
  $('#users-next').addEventListener('click', () => {
    app.usersOffset += USERS_PAGE;
    refreshTab();
  });

  try {
    const session = await api('GET', '/api/session');
    app.csrf = session.csrf || '';
    app.user = session.user || '';
    app.node = session.node || '';
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    setLive('error', `Cannot reach the node: ${error.message}`);
  }
  $('#logout-csrf').value = app.csrf;
  setText($('#user-name'), app.user || '–');
  setText($('#node-name'), app.node || 'node');
  for (const el of document.querySelectorAll('.node-name-ref')) setText(el, app.node || 'this node');
  document.title = `${app.node ? `${app.node} · ` : ''}Starling admin`;

  showTab(window.location.hash.slice(1) || 'cluster');
  pollCluster();
}

document.addEventListener('DOMContentLoaded', start);
