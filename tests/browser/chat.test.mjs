// The /chat page (Converse.js served by the node) in a real headless Chromium.
//
// Started by the Rust test `t95_converse_chat_across_the_cluster` of the web
// suite (tests/tests/web/t95_chat_page.rs), which starts three nodes with
// [http] chat_page on, makes alice, bob and carol contacts of each other, and
// keeps carol online over plain TCP. It passes in the environment:
//   STARLING_CHAT_WS_URL     /chat on one node (alice connects over WebSocket)
//   STARLING_CHAT_BOSH_URL   /chat?transport=bosh on another (bob, over BOSH)
//   STARLING_DOMAIN          the XMPP domain
//   STARLING_PASSWORD        the password of alice and bob
//   STARLING_SCREENSHOT_DIR  where screenshots go
//   STARLING_CHROMIUM        the browser (default /usr/bin/chromium)
//
// Carol (the Rust side) sends each browser user a message once both are
// online, waits for their answers and confirms each.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set (this test is run by the Rust test t95_chat_page)`);
  return value;
};

const WS_URL = env('STARLING_CHAT_WS_URL');
const BOSH_URL = env('STARLING_CHAT_BOSH_URL');
const DOMAIN = env('STARLING_DOMAIN');
const PASSWORD = env('STARLING_PASSWORD');
const SHOTS = env('STARLING_SCREENSHOT_DIR');
const CHROMIUM = env('STARLING_CHROMIUM', '/usr/bin/chromium');
const WAIT = 30_000;

const jid = (user) => `${user}@${DOMAIN}`;
let browser;
const pages = {};
const problems = [];
let failed = false;

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
      for (const [user, page] of Object.entries(pages)) {
        await page.screenshot({ path: path.join(SHOTS, `failure-${user}.png`) }).catch(() => {});
      }
      throw error;
    }
  });
}

async function openPage(user, url) {
  // One context each: separate storage, as two people on two machines.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`${user}: ${error.message}`));
  page.on('console', (line) => {
    // Sponsor logos from the web are blocked by the page's policy: expected.
    if (line.type() === 'error' && !line.text().includes('Content Security Policy')) {
      problems.push(`${user}: ${line.text()}`);
    }
  });
  await page.goto(url);
  pages[user] = page;
  return page;
}

async function logIn(page, user) {
  await page.fill('input[name=jid]', jid(user), { timeout: WAIT });
  await page.fill('input[name=password]', PASSWORD);
  await page.click('converse-login-form [type=submit]');
  await page.waitForSelector('.controlbox-section converse-user-profile, converse-controlbox .xmpp-status, converse-roster', { timeout: WAIT });
}

/** The contact's roster entry shows it online. */
async function seesOnline(page, user) {
  await page.waitForSelector(
    `li.current-xmpp-contact[data-status="online"] a.open-chat[data-jid="${jid(user)}"]`,
    { timeout: WAIT },
  );
}

async function openChat(page, user) {
  await page.click(`a.open-chat[data-jid="${jid(user)}"]`);
  await page.waitForSelector(`converse-chat[jid="${jid(user)}"] textarea.chat-textarea`, { timeout: WAIT });
}

async function say(page, user, text) {
  const box = page.locator(`converse-chat[jid="${jid(user)}"] textarea.chat-textarea`);
  await box.fill(text);
  await box.press('Enter');
}

async function hears(page, user, text) {
  await page
    .locator(`converse-chat[jid="${jid(user)}"] .chat-msg__text`, { hasText: text })
    .first()
    .waitFor({ timeout: WAIT });
}

describe('/chat: Converse.js from the node, across the cluster', () => {
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
  });

  step('alice logs in over WebSocket, bob over BOSH, on two nodes', async () => {
    await logIn(await openPage('alice', WS_URL), 'alice');
    await logIn(await openPage('bob', BOSH_URL), 'bob');
  });

  step('each sees the other, and carol on TCP, online', async () => {
    await seesOnline(pages.alice, 'bob');
    await seesOnline(pages.bob, 'alice');
    await seesOnline(pages.alice, 'carol');
    await seesOnline(pages.bob, 'carol');
    await pages.alice.screenshot({ path: path.join(SHOTS, 'alice-roster.png') });
  });

  step('alice and bob chat', async () => {
    await openChat(pages.alice, 'bob');
    await openChat(pages.bob, 'alice');
    await say(pages.alice, 'bob', 'Hello bob, from a WebSocket');
    await hears(pages.bob, 'alice', 'Hello bob, from a WebSocket');
    await say(pages.bob, 'alice', 'Hello alice, from BOSH');
    await hears(pages.alice, 'bob', 'Hello alice, from BOSH');
  });

  step('both hear carol and answer her', async () => {
    for (const user of ['alice', 'bob']) {
      await openChat(pages[user], 'carol');
      await hears(pages[user], 'carol', `Hi ${user}, carol here over TCP`);
      await say(pages[user], 'carol', `Hi carol, ${user} here`);
    }
    // Carol confirms each answer: the page stays open until it has left.
    for (const user of ['alice', 'bob']) {
      await hears(pages[user], 'carol', `Got it, ${user}`);
    }
    await pages.bob.screenshot({ path: path.join(SHOTS, 'bob-chat.png') });
  });

  step('no script errors on either page', async () => {
    assert.deepEqual(problems, []);
  });
});
