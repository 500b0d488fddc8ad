// The admin console in a real headless Chromium, against a running cluster.
//
// Started by the Rust test `admin_browser` (tests/tests/admin_browser/main.rs),
// which starts three nodes, logs XMPP clients in and passes in the environment:
//   STARLING_ADMIN_URL        base URL of the node the browser uses (http://127.0.0.1:PORT)
//   STARLING_ADMIN_USER       an admin account and its password
//   STARLING_ADMIN_PASSWORD
//   STARLING_NODE_NAME        that node's name (node1)
//   STARLING_KILL_NODE        the member the Rust side kills and restarts (node3)
//   STARLING_KICK_JID         a session on that node for the browser to kick
//   STARLING_SESSION_JIDS     comma-separated sessions that must be listed on that node
//   STARLING_CONTROL_DIR      where the page asks the Rust side for a kill or a restart:
//                             this file writes NAME.request, the Rust side answers NAME.done
//   STARLING_SCREENSHOT_DIR   where screenshots go (and failure screenshots)
//   STARLING_CHROMIUM         the browser (default /usr/bin/chromium)
//
// The steps run in order on one page; once a step fails the rest are skipped,
// so that one failure does not cost every later timeout.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set (this test is run by the Rust test admin_browser)`);
  return value;
};

const BASE = env('STARLING_ADMIN_URL').replace(/\/$/, '');
const ADMIN = env('STARLING_ADMIN_USER');
const PASSWORD = env('STARLING_ADMIN_PASSWORD');
const NODE = env('STARLING_NODE_NAME');
const KILL_NODE = env('STARLING_KILL_NODE');
const KICK_JID = env('STARLING_KICK_JID');
const SESSION_JIDS = env('STARLING_SESSION_JIDS', '').split(',').filter(Boolean);
const CONTROL = env('STARLING_CONTROL_DIR');
const SHOTS = env('STARLING_SCREENSHOT_DIR');
const CHROMIUM = env('STARLING_CHROMIUM', '/usr/bin/chromium');

/** Failure detection plus a Raft membership change, with room for a loaded machine. */
const DOWN_WAIT = 60_000;
const WAIT = 15_000;

let context;
let page;
let profile;
let failed = false;
const consoleLines = [];

/** One step of the scenario; skipped once an earlier one failed. */
function step(name, body) {
  it(name, async (t) => {
    if (failed) {
      t.skip('an earlier step failed');
      return;
    }
    try {
      await body();
    } catch (error) {
      failed = true;
      const file = path.join(SHOTS, `failure-${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
      await page?.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`step "${name}" failed; screenshot ${file}; page URL ${page?.url()}`);
      if (consoleLines.length) console.error(`browser console:\n${consoleLines.join('\n')}`);
      throw error;
    }
  });
}

/** Polls `probe` until it returns a truthy value, or fails after `timeout` ms. */
async function until(what, probe, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Asks the Rust side to act on the cluster and waits until it has. */
async function ask(action, timeout = 90_000) {
  const done = path.join(CONTROL, `${action}.done`);
  fs.writeFileSync(path.join(CONTROL, `${action}.request`), KILL_NODE);
  await until(`the test driver to ${action} ${KILL_NODE}`, () => fs.existsSync(done), timeout);
}

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
const text = (selector) => page.locator(selector).first().textContent();
const memberRow = (name) => page.locator(`#members-table tbody tr[data-node="${name}"]`);
const rowState = (name) => memberRow(name).getAttribute('data-state', { timeout: 1000 });

async function openTab(name) {
  await page.getByRole('tab', { name }).click();
  await until(`the ${name} tab`, () => page.getByRole('tabpanel', { name }).isVisible());
}

/** Answers the open confirmation dialog with the button `name`. */
async function answerDialog(name) {
  const dialog = page.getByRole('dialog');
  await dialog.waitFor({ state: 'visible', timeout: WAIT });
  await dialog.getByRole('button', { name, exact: true }).click();
  await dialog.waitFor({ state: 'hidden', timeout: WAIT });
}

async function toastSays(message) {
  await until(`a message "${message}"`, async () =>
    (await page.locator('#toasts').textContent()).includes(message));
}

describe('admin console', () => {
  before(async () => {
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'starling-chromium-'));
    // A fresh profile each run; the flags keep Chromium off the network
    // (no update checks, sync or component downloads on a closed machine).
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1366, height: 860 },
      colorScheme: 'light',
      locale: 'en-US',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
    page.on('pageerror', (error) => consoleLines.push(`page error: ${error.message}`));
    await until(`${BASE} to answer`, async () => (await fetch(`${BASE}/admin/login`)).ok, 30_000);
  });

  after(async () => {
    await context?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  step('the console needs a login', async () => {
    await page.goto(`${BASE}/admin`);
    assert.equal(new URL(page.url()).pathname, '/admin/login');
    const api = await fetch(`${BASE}/api/cluster`);
    assert.equal(api.status, 401, 'the API answers 401 without a login');
  });

  step('a wrong password is refused', async () => {
    await page.getByLabel('Username').fill(ADMIN);
    await page.getByLabel('Password').fill(`${PASSWORD}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForLoadState();
    assert.equal(new URL(page.url()).pathname, '/admin/login');
    const error = await until('an error message', async () => (await text('[role="alert"]'))?.trim());
    assert.match(error, /wrong|invalid|incorrect/i);
    assert.equal(await page.locator('#panel-cluster').count(), 0, 'no console after a wrong password');
  });

  step('the right password signs in', async () => {
    await page.getByLabel('Username').fill(ADMIN);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${BASE}/admin**`);
    await until('the user name in the header', async () => (await text('#user-name')) === ADMIN);
    assert.equal(await text('#node-name'), NODE);
  });

  step('the cluster tab shows three members up, one of them senior', async () => {
    await until('3 members up', async () =>
      (await page.locator('#members-table tbody tr[data-state="up"]').count()) === 3, DOWN_WAIT);
    await until('one senior member', async () =>
      (await page.locator('#members-table .badge.senior').count()) === 1);
    assert.equal(await page.locator('#members-table .badge.self').count(), 1);
    const self = memberRow(NODE);
    assert.match(await self.textContent(), /this node/);
    assert.equal(await text('#t-members'), '3 of 3');
    assert.equal(await page.locator('#cluster-banners .banner').count(), 0, 'no banner');
  });

  step('the load graphs draw one line per member', async () => {
    for (const id of ['graph-sessions', 'graph-stanzas']) {
      await until(`three lines in #${id}`, async () =>
        (await page.locator(`#${id}`).getAttribute('data-lines')) === '3');
      assert.equal(await page.locator(`#${id} polyline`).count(), 3);
    }
    // Two sessions on this node: the sessions scale reaches them.
    await until('the sessions scale to reach 2', async () =>
      Number(await page.locator('#graph-sessions').getAttribute('data-top')) >= 2);
    assert.equal(await page.locator('#graph-legend li').count(), 3);
  });

  step(`${KILL_NODE} is shown down after a SIGKILL, without a reload`, async () => {
    // A reload would lose this mark.
    await page.evaluate(() => {
      window.starlingTestMark = 'same page';
    });
    await ask('kill');
    await until(`${KILL_NODE} down`, async () => (await rowState(KILL_NODE)) === 'down', DOWN_WAIT);
    assert.equal(await page.evaluate(() => window.starlingTestMark), 'same page');
    assert.match(await text('#t-members'), /^2 of 3$/);
    await until('the history to show it going down', async () =>
      (await page.locator(`#history tr[data-node="${KILL_NODE}"][data-state="down"]`).count()) > 0);
    // The survivors keep (or elect) a senior member.
    await until('a senior member among the survivors', async () =>
      (await page.locator('#members-table tr[data-state="up"] .badge.senior').count()) === 1, DOWN_WAIT);
    await until('the banners to settle', async () =>
      (await page.locator('#cluster-banners .banner').count()) === 0, DOWN_WAIT);
    await shot('admin-cluster');
  });

  step(`${KILL_NODE} comes back up after a restart, without a reload`, async () => {
    await ask('restart');
    await until(`${KILL_NODE} up`, async () => (await rowState(KILL_NODE)) === 'up', DOWN_WAIT);
    assert.equal(await page.evaluate(() => window.starlingTestMark), 'same page');
    const states = await page.locator(`#history tr[data-node="${KILL_NODE}"]`)
      .evaluateAll((rows) => rows.map((row) => row.dataset.state));
    // Newest first: it came back after going down.
    const up = states.indexOf('up');
    const down = states.indexOf('down');
    assert.ok(up !== -1 && down !== -1 && up < down, `history of ${KILL_NODE}: ${states}`);
  });

  step('the sessions tab lists this node\'s sessions and a cluster-wide count', async () => {
    await openTab('Sessions');
    for (const jid of SESSION_JIDS) {
      await until(`session ${jid}`, () => page.locator(`#sessions-table tr[data-jid="${jid}"]`).count());
    }
    const local = Number((await text('#s-local')).replace(/\D/g, ''));
    const cluster = Number((await text('#s-cluster')).replace(/\D/g, ''));
    assert.ok(local >= SESSION_JIDS.length, `local count ${local}`);
    assert.ok(cluster > local, `cluster count ${cluster} counts the other nodes' sessions too`);
    await shot('admin-sessions');
  });

  step('sessions can be searched by JID', async () => {
    const user = KICK_JID.split('@')[0];
    await page.getByLabel('Search sessions by JID').fill(user);
    await until(`only ${user}'s sessions`, async () => {
      const jids = await page.locator('#sessions-table tbody tr')
        .evaluateAll((rows) => rows.map((row) => row.dataset.jid));
      return jids.length > 0 && jids.every((jid) => jid.includes(user));
    });
  });

  step('a kick asks first and can be cancelled', async () => {
    await page.getByRole('button', { name: `Kick ${KICK_JID}` }).click();
    await answerDialog('Cancel');
    await page.waitForTimeout(500);
    assert.equal(await page.locator(`#sessions-table tr[data-jid="${KICK_JID}"]`).count(), 1);
  });

  step('a session is kicked', async () => {
    await page.getByRole('button', { name: `Kick ${KICK_JID}` }).click();
    await answerDialog('Kick');
    await toastSays(`Kicked ${KICK_JID}`);
    await until('the kicked session to leave the list', async () =>
      (await page.locator(`#sessions-table tr[data-jid="${KICK_JID}"]`).count()) === 0);
    await page.getByLabel('Search sessions by JID').fill('');
  });

  step('the caches tab shows every cache with its counters', async () => {
    await openTab('Caches');
    await until('cache rows', async () => (await page.locator('#caches-table tbody tr').count()) > 0);
    const rows = await page.locator('#caches-table tbody tr').evaluateAll((trs) =>
      trs.map((tr) => [...tr.cells].map((td) => td.textContent.trim())));
    for (const [name, kind, size, , , hits, misses, evictions, ratio] of rows) {
      assert.match(kind, /^(replicated|invalidated|local)$/, `kind of ${name}`);
      for (const number of [size, hits, misses, evictions]) assert.match(number, /^[\d,]+$/, `${name}: ${number}`);
      assert.match(ratio, /^(–|\d+\.\d %)$/, `hit ratio of ${name}`);
    }
    assert.ok(rows.some(([, kind]) => kind === 'replicated'), 'the session directory is listed');
    await shot('admin-caches');
  });

  step('a cache is cleared', async () => {
    const target = page.locator('#caches-table tbody tr').filter({
      has: page.locator('button:not([disabled])', { hasText: 'Clear' }),
    }).first();
    const name = await target.getAttribute('data-cache');
    assert.ok(name, 'a cache that can be cleared');
    await page.getByRole('button', { name: `Clear ${name}`, exact: true }).click();
    await toastSays(`Cleared ${name}`);
    await until(`${name} to be empty`, async () =>
      (await page.locator(`#caches-table tr[data-cache="${name}"] td:nth-child(3)`).textContent()) === '0');
  });

  step('the federation tab lists this node\'s server-to-server streams (none here)', async () => {
    await openTab('Federation');
    await until('the empty federation table', () => page.locator('#s2s-empty').isVisible());
    assert.equal(await page.locator('#s2s-table tbody tr').count(), 0);
    assert.equal(await page.locator('#s2s-table thead th').count(), 10);
  });

  step('users are listed, added, searched and given a new password', async () => {
    await openTab('Users');
    await until('the admin account in the list', () =>
      page.locator(`#users-table tr[data-user="${ADMIN}"]`).count());
    await page.getByRole('button', { name: 'Add user' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Username').fill('frank');
    await dialog.getByLabel('Password').fill('first-pw');
    await dialog.getByLabel(/Administrator/).check();
    await dialog.getByRole('button', { name: 'Add user' }).click();
    await dialog.waitFor({ state: 'hidden', timeout: WAIT });
    await toastSays('Added frank');
    const row = page.locator('#users-table tr[data-user="frank"]');
    await until('frank in the list, as an admin', async () =>
      (await row.count()) === 1 && /admin/.test(await row.textContent()));
    await shot('admin-users');

    await page.getByLabel('Search users by name').fill('fra');
    await until('only frank', async () =>
      (await page.locator('#users-table tbody tr').evaluateAll((rows) =>
        rows.map((r) => r.dataset.user))).join() === 'frank');

    await page.getByRole('button', { name: 'Reset the password of frank' }).click();
    await page.getByRole('dialog').getByLabel('New password').fill('second-pw');
    await page.getByRole('dialog').getByRole('button', { name: 'Set password' }).click();
    await toastSays('Password of frank changed');
    const basic = (password) => ({ Authorization: `Basic ${Buffer.from(`frank:${password}`).toString('base64')}` });
    assert.equal((await fetch(`${BASE}/api/session`, { headers: basic('second-pw') })).status, 200);
    assert.equal((await fetch(`${BASE}/api/session`, { headers: basic('first-pw') })).status, 401);
  });

  step('a user is deleted after a confirmation', async () => {
    await page.getByRole('button', { name: 'Delete frank' }).click();
    await answerDialog('Delete');
    await toastSays('Deleted frank');
    await until('frank gone', async () => (await page.locator('#users-table tr[data-user="frank"]').count()) === 0);
    await page.getByLabel('Search users by name').fill('');
  });

  step('logging out ends the session', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${BASE}/admin/login**`);
    await page.goto(`${BASE}/admin`);
    assert.equal(new URL(page.url()).pathname, '/admin/login');
    const status = await page.evaluate(async () => (await fetch('/api/cluster')).status);
    assert.equal(status, 401);
  });
});
