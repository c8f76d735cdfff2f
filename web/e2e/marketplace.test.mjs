// End-to-end tests of the web client against the real backend (`ticketing up`), in headless
// Chromium (node:test, in one process with the backend it starts). Run from web/:
// npm run test:e2e (TICKETING_BIN: absolute or relative to the repository, default
// target/debug/ticketing), or scripts/test-web.sh from the
// repository. Screenshots and logs of every step land in e2e/artifacts/.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import { cleanArtifacts, EXPIRATION_WINDOW_SECONDS, log, newUserPage, startBackend, startBrowser } from './harness.mjs';

let backend;
let browser;
const pages = [];

before(async () => {
  cleanArtifacts();
  backend = await startBackend();
  browser = await startBrowser();
});

afterEach(async () => {
  // What every page of the test shows at its end (when it failed: what went wrong), then close them.
  for (const handle of pages.splice(0)) {
    await handle.shot('end').catch(() => {});
    await handle.context.close().catch(() => {});
  }
});

after(async () => {
  for (const { context } of pages) await context.close().catch(() => {});
  await browser?.close().catch(() => {});
  await backend?.stop();
});

const unique = () => randomUUID().slice(0, 8);

async function user(name, options) {
  const handle = await newUserPage(browser, backend.baseUrl, name, options);
  pages.push(handle);
  return handle;
}

/** Marks the document, so that a later check can tell the page was never reloaded. */
async function markDocument(page) {
  const mark = randomUUID();
  await page.evaluate((m) => {
    window.__e2eMark = m;
  }, mark);
  return async () => assert.equal(await page.evaluate(() => window.__e2eMark), mark, 'the page was reloaded');
}

async function signUp(page, email, password = 'secret-pass') {
  await page.goto('/signup');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  // Attached, not visible: on a phone-sized screen the account menu is folded away.
  await page.getByTestId('current-user').filter({ hasText: email }).waitFor({ state: 'attached' });
}

/** Waits until the page's live stream is open (GET /api/live answered its `ready`). */
async function liveOpen(page) {
  await page.locator('[data-testid="live-status"][data-live="open"]').first().waitFor({ state: 'attached', timeout: 20_000 });
}

async function sellTicket(page, title, price) {
  await page.getByRole('link', { name: 'Sell', exact: true }).first().click();
  await page.getByRole('heading', { name: 'Sell a ticket' }).waitFor();
  await page.getByLabel('Title').fill(title);
  await page.getByLabel('Price').fill(String(price));
  const posted = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/tickets');
  const readBack = page.waitForRequest((r) => r.method() === 'GET' && /^\/api\/tickets\/[^/]+$/.test(new URL(r.url()).pathname));
  await page.getByRole('button', { name: 'List ticket' }).click();
  const answer = await posted;
  assert.equal(answer.status(), 201);
  // A command carries an Idempotency-Key; its answer's consistency token goes back on the read.
  assert.match(answer.request().headers()['idempotency-key'] ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const token = answer.headers()['x-consistency-token'];
  assert.match(token ?? '', /^tickets:\d+:\d+$/, 'POST /api/tickets answers X-Consistency-Token');
  const read = await readBack;
  assert.ok((read.headers()['x-consistency-token'] ?? '').split(',').includes(token), `the read-back sends ${token}: ${read.headers()['x-consistency-token']}`);
  await page.getByRole('heading', { name: title }).waitFor();
  const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
  assert.ok(id, 'the ticket page has the ticket id in its path');
  assert.equal(new URL(read.url()).pathname, `/api/tickets/${id}`);
  return id;
}

async function orderStatus(page) {
  return page.getByTestId('order-status').getAttribute('data-status');
}

function noProblems(...handles) {
  // No script error, no console error other than Chromium's note of a 4xx answer, no 5xx answer.
  for (const h of handles) assert.deepEqual(h.problems, [], 'the pages ran without errors');
}

describe('web client against ticketing up', () => {
  test('a ticket is sold: the seller lists it, a buyer pays, a third user sees it come and go live', async () => {
    const a = await user('1-seller');
    const b = await user('1-buyer');
    // The watcher uses a phone-sized screen.
    const c = await user('1-watcher', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const title = `Concert ${unique()}`;

    await signUp(c.page, `watcher-${unique()}@example.com`);
    await c.page.goto('/tickets');
    await c.page.getByRole('heading', { name: 'Tickets for sale' }).waitFor();
    await c.page.getByRole('button', { name: 'Menu' }).click();
    await liveOpen(c.page);
    await c.shot('list-open-live');
    await c.page.getByRole('button', { name: 'Menu' }).click();
    const notReloaded = await markDocument(c.page);

    await signUp(a.page, `seller-${unique()}@example.com`);
    await a.shot('signed-up');
    const ticketId = await sellTicket(a.page, title, '20.5');
    assert.equal(await a.page.getByTestId('ticket-price').textContent(), '$20.50');
    assert.equal(await a.page.getByTestId('ticket-status').textContent(), 'Available');
    await a.shot('ticket-listed');
    log(`ticket ${ticketId} listed`);

    // C's open list shows the new ticket without a reload.
    const card = c.page.locator(`[data-ticket-id="${ticketId}"]`);
    await card.waitFor({ timeout: 15_000 });
    assert.match(await card.textContent(), new RegExp(`${title}.*\\$20\\.50`));
    await notReloaded();
    await c.shot('ticket-appeared-live');

    // The seller edits the price (PUT); the watcher's list follows.
    await a.page.getByRole('link', { name: 'Edit ticket' }).click();
    await a.page.getByRole('heading', { name: 'Edit ticket' }).waitFor();
    assert.equal(await a.page.getByLabel('Price').inputValue(), '20.5');
    await a.page.getByLabel('Price').fill('25');
    await a.shot('editing');
    await a.page.getByRole('button', { name: 'Save changes' }).click();
    await a.page.getByTestId('ticket-price').filter({ hasText: '$25.00' }).waitFor();
    await card.filter({ hasText: '$25.00' }).waitFor({ timeout: 15_000 });
    await notReloaded();
    await c.shot('price-changed-live');

    await signUp(b.page, `buyer-${unique()}@example.com`);
    await b.page.goto(`/tickets/${ticketId}`);
    await b.page.getByRole('heading', { name: title }).waitFor();
    await liveOpen(b.page);
    await b.shot('ticket-page');
    await b.page.getByRole('button', { name: 'Buy for $25.00' }).click();
    await b.page.waitForURL(/\/orders\/[^/]+$/);
    await b.page.getByTestId('order-status').waitFor();
    assert.equal(await orderStatus(b.page), 'created');
    assert.match(await b.page.getByRole('timer').textContent(), /^0:(1\d|20|0\d)$/);
    await b.shot('order-created');

    // The reserved ticket leaves C's list, and the seller's page says it is reserved, live.
    await card.waitFor({ state: 'detached', timeout: 15_000 });
    await notReloaded();
    await c.shot('ticket-gone-live');

    await b.page.getByLabel(/Test Visa card/).check();
    await b.page.getByRole('button', { name: 'Pay $25.00' }).click();
    await b.page.locator('[data-testid="order-status"][data-status="complete"]').waitFor({ timeout: 15_000 });
    assert.match(await b.page.getByTestId('order-status').textContent(), /Complete/);
    await b.shot('order-complete');

    // The seller's open ticket page turned to reserved (sold) by itself.
    await a.page.getByTestId('ticket-status').filter({ hasText: 'Reserved' }).waitFor({ timeout: 15_000 });
    await a.shot('seller-sees-reserved');

    await b.page.getByRole('link', { name: 'My orders' }).first().click();
    const row = b.page.locator('[data-testid="order-list"] li').filter({ hasText: title });
    await row.waitFor();
    assert.match(await row.textContent(), /Complete/);
    await b.shot('my-orders');

    // Still not listed after a fresh read (it is sold).
    await c.page.reload();
    await c.page.getByRole('heading', { name: 'Tickets for sale' }).waitFor();
    await liveOpen(c.page);
    assert.equal(await c.page.locator(`[data-ticket-id="${ticketId}"]`).count(), 0);
    noProblems(a, b, c);
  });

  test('an unpaid order turns cancelled on screen at its deadline, and the ticket is for sale again', async () => {
    const seller = await user('2-seller');
    const buyer = await user('2-buyer');
    const title = `Theatre ${unique()}`;
    await signUp(seller.page, `seller2-${unique()}@example.com`);
    const ticketId = await sellTicket(seller.page, title, '15');
    await seller.page.goto('/tickets');
    await liveOpen(seller.page);

    await signUp(buyer.page, `buyer2-${unique()}@example.com`);
    await buyer.page.goto(`/tickets/${ticketId}`);
    await liveOpen(buyer.page);
    await buyer.page.getByRole('button', { name: 'Buy for $15.00' }).click();
    await buyer.page.waitForURL(/\/orders\/[^/]+$/);
    await buyer.page.getByRole('timer').waitFor();
    assert.equal(await orderStatus(buyer.page), 'created');
    const notReloaded = await markDocument(buyer.page);
    await buyer.shot('order-counting-down');
    await seller.page.locator(`[data-ticket-id="${ticketId}"]`).waitFor({ state: 'detached' });

    const started = Date.now();
    await buyer.page.locator('[data-testid="order-status"][data-status="cancelled"]').waitFor({ timeout: (EXPIRATION_WINDOW_SECONDS + 30) * 1000 });
    log(`order cancelled on screen ${((Date.now() - started) / 1000).toFixed(1)} s after it was shown`);
    await notReloaded();
    // It came over the live stream: the stream was open the whole time, so the page never polled.
    assert.equal(await buyer.page.getByTestId('live-status').getAttribute('data-live'), 'open');
    assert.match(await buyer.page.getByTestId('order-status').textContent(), /Cancelled/);
    assert.equal(await buyer.page.getByRole('timer').count(), 0, 'no countdown on a cancelled order');
    assert.equal(await buyer.page.getByRole('button', { name: /^Pay / }).count(), 0, 'no payment form on a cancelled order');
    await buyer.shot('order-cancelled-live');

    // The released ticket is back on the seller's open list, live.
    await seller.page.locator(`[data-ticket-id="${ticketId}"]`).waitFor({ timeout: 15_000 });
    await seller.shot('ticket-back-on-sale');
    noProblems(seller, buyer);
  });

  test('bad input shows the API messages next to the fields', async () => {
    const u = await user('3-errors');
    const { page } = u;

    // What the API itself says about this input.
    const api = await fetch(`${backend.baseUrl}/api/users/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'not-an-email', password: 'ab' }),
    });
    assert.equal(api.status, 400);
    const { errors } = await api.json();
    const byField = Object.fromEntries(errors.map((e) => [e.field, e.message]));
    assert.ok(byField.email && byField.password, `the API names both fields: ${JSON.stringify(errors)}`);

    await page.goto('/signup');
    await page.getByLabel('Email').fill('not-an-email');
    await page.getByLabel('Password').fill('ab');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByTestId('error-email').waitFor();
    assert.match(await page.getByTestId('error-email').textContent(), new RegExp(byField.email));
    assert.match(await page.getByTestId('error-password').textContent(), new RegExp(byField.password));
    assert.equal(await page.getByLabel('Email').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'email', 'focus on the first field in error');
    await u.shot('signup-errors');

    const email = `errors-${unique()}@example.com`;
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('good-pass');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByTestId('current-user').filter({ hasText: email }).waitFor({ state: 'attached' });

    // Signing up again with the same email: a field-less message at the top of the form.
    const other = await user('3-errors-again');
    await other.page.goto('/signup');
    await other.page.getByLabel('Email').fill(email);
    await other.page.getByLabel('Password').fill('good-pass');
    await other.page.getByRole('button', { name: 'Create account' }).click();
    await other.page.getByTestId('form-errors').filter({ hasText: 'Email in use' }).waitFor();
    await other.shot('email-in-use');

    await page.getByRole('link', { name: 'Sell', exact: true }).first().click();
    await page.getByRole('heading', { name: 'Sell a ticket' }).waitFor();
    await page.getByLabel('Title').fill('');
    await page.getByLabel('Price').fill('-5');
    await page.getByRole('button', { name: 'List ticket' }).click();
    await page.getByTestId('error-title').waitFor();
    assert.match(await page.getByTestId('error-title').textContent(), /Title is required/);
    assert.match(await page.getByTestId('error-price').textContent(), /Price must be greater than 0/);
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'title');
    await u.shot('sell-errors');

    // A ticket to buy, from another user; then a declined card.
    const seller = await user('3-seller');
    await signUp(seller.page, `seller3-${unique()}@example.com`);
    const title = `Opera ${unique()}`;
    const ticketId = await sellTicket(seller.page, title, '30');
    await page.goto(`/tickets/${ticketId}`);
    await page.getByRole('button', { name: 'Buy for $30.00' }).click();
    await page.waitForURL(/\/orders\/[^/]+$/);
    await page.getByLabel(/Test card that is declined/).check();
    await page.getByRole('button', { name: 'Pay $30.00' }).click();
    const declined = page.getByTestId('form-errors');
    await declined.waitFor();
    assert.match(await declined.textContent(), /declined/i);
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'form-errors');
    assert.equal(await orderStatus(page), 'created', 'a declined card leaves the order payable');
    await u.shot('card-declined');

    // Another card then pays (a new attempt, a new Idempotency-Key).
    await page.getByLabel(/Test Visa card/).check();
    await page.getByRole('button', { name: 'Pay $30.00' }).click();
    await page.locator('[data-testid="order-status"][data-status="complete"]').waitFor({ timeout: 15_000 });
    await u.shot('paid-after-decline');

    // Signing out closes the stream and the session.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in', exact: true }).waitFor();
    assert.equal(await page.getByTestId('live-status').count(), 0, 'no live stream when signed out');
    const session = await page.evaluate(() => fetch('/api/users/currentuser').then((r) => r.json()));
    assert.deepEqual(session, { currentUser: null });
    await u.shot('signed-out');
    noProblems(u, other, seller);
  });

  test('the launcher serves the client at / (and its routes on a reload)', async () => {
    for (const route of ['/', '/tickets', '/orders/some-id', '/signin']) {
      const response = await fetch(`${backend.baseUrl}${route}`);
      const body = await response.text();
      assert.equal(response.status, 200, `GET ${route}`);
      assert.match(response.headers.get('content-type') ?? '', /^text\/html/, `GET ${route} answers the client's index.html, not ${response.headers.get('content-type')}: ${body.slice(0, 80)}`);
      assert.match(body, /<div id="root">/, `GET ${route}`);
    }
    const u = await user('4-home');
    await u.page.goto('/');
    await u.page.getByRole('heading', { name: 'Tickets for sale' }).waitFor();
    await u.shot('home');
    noProblems(u);
  });
});
