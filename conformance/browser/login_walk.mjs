// Headless Chromium (Debian's, driven by playwright-core) walks Sésame's pages as a person would
// (DESIGN.md §10): the login form with the keyboard only, a wrong password and its error, SSO on
// the next visit, the session cookie's flags, logout, the pages on a phone-sized screen, in
// French and English — and axe-core checks every page for accessibility problems.
//
// Usage: node login_walk.mjs SESAME_BINARY
// Starts `sesame demo` on a free loopback port with a fresh data directory, and stops it by PID.
// Only 127.0.0.1 is contacted. Exits non-zero on the first failed check.

import { resolve } from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHROMIUM_ARGS, abort, accessible, axeViolations, check, startDemo, summary,
} from './walk_support.mjs';

async function main() {
  const binary = resolve(process.argv[2]);
  const { child, base, banner } = await startDemo(binary);
  const login = banner.match(/^\s+(\S+)\s+password: (.+?)\s{2,}student/m);
  check(login !== null, 'the demo prints a student account and its password');
  const [, username, password] = login;
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  try {
    // Self-check: axe-core does see a problem when there is one.
    const probe = await browser.newPage();
    await probe.setContent('<html lang="fr"><body><main><img src="data:,"><input type="text"></main></body></html>');
    check((await axeViolations(probe)).length >= 2, 'axe-core reports an image without alt and an unlabelled field');
    await probe.close();

    const context = await browser.newContext({ locale: 'fr-FR' });
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    check((await page.title()).startsWith('Connexion'), 'the login page is in French by default');
    await accessible(page, 'the login page');

    // Keyboard only: the focus order follows the form.
    const focused = await page.evaluate(() => document.activeElement.id);
    check(focused === 'username', `the identifier field has the focus when the page opens (${focused})`);
    const order = [];
    for (let i = 0; i < 12; i += 1) {
      await page.keyboard.press('Tab');
      order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.getAttribute('href') || document.activeElement.tagName));
    }
    // The identifier field has the focus on arrival; from it, Tab goes through the form in order.
    const cycle = [focused, ...order];
    const expected = ['username', 'password', 'public_computer', 'remember_me', 'BUTTON', '/password/forgot', '/activate'];
    check(expected.every((name, i) => cycle[i] === name),
      `the keyboard reaches the fields in order (${order.join(' → ')})`);
    check(await page.evaluate(() => document.querySelector('#remember_me').checked === false),
      '"stay signed in" is not ticked by default');

    // A wrong password: the error is announced and tied to the fields.
    await page.focus('#username');
    await page.keyboard.type(username);
    await page.keyboard.press('Tab');
    await page.keyboard.type('pas le bon mot de passe');
    await page.keyboard.press('Enter');
    await page.waitForLoadState();
    const alert = await page.locator('[role=alert]').textContent();
    check(alert.includes('incorrect'), `a wrong password is announced (${alert.trim()})`);
    check(await page.getAttribute('#password', 'aria-invalid') === 'true'
      && (await page.getAttribute('#password', 'aria-describedby')).includes('login_error'),
    'the error is tied to the password field');
    check(await page.inputValue('#username') === username, 'the identifier is kept');
    await accessible(page, 'the login page with an error');

    // The right password, pasted (paste is allowed), then Enter.
    await page.focus('#password');
    await page.fill('#password', password);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Vous êtes connecté' }).waitFor({ timeout: 30000 });
    check((await page.content()).includes(username), 'the login succeeds and says who is signed in');
    const cookie = (await context.cookies()).find((c) => c.name === 'sesame');
    check(cookie && cookie.httpOnly && cookie.sameSite === 'Lax' && cookie.expires === -1,
      'the session cookie is HttpOnly, SameSite=Lax and dies with the browser');
    check(await page.evaluate(() => document.cookie.includes('sesame=')) === false, 'scripts cannot read it');
    await accessible(page, 'the signed-in page');

    // SSO: another tab of the same browser is recognised.
    const second = await context.newPage();
    await second.goto(`${base}/login`);
    check((await second.content()).includes('Vous êtes connecté'), 'another tab is already signed in (SSO)');

    // Logout: GET asks, the button ends it everywhere in this browser.
    await second.goto(`${base}/logout`);
    await accessible(second, 'the logout confirmation');
    await second.click('button[type=submit]');
    await second.getByRole('status').waitFor({ timeout: 30000 });
    check((await second.content()).includes('Vous êtes déconnecté'), 'logout confirms');
    await page.reload();
    check(await page.locator('#password').count() === 1, 'the first tab is signed out too');
    check(!(await context.cookies()).some((c) => c.name === 'sesame'), 'the cookie is gone');

    // A real CAS login through the demo's own application, then method=POST, whose page posts
    // the ticket back with a nonced script (only a browser runs it).
    const casContext = await browser.newContext({ locale: 'fr-FR' });
    const cas = await casContext.newPage();
    await cas.goto(`${base}/demo/cas`);
    check(cas.url().startsWith(`${base}/login?flow=`), `the demo application sends the browser to the login page (${cas.url()})`);
    await cas.fill('#username', username);
    await cas.fill('#password', password);
    await cas.keyboard.press('Enter');
    await cas.getByRole('status').waitFor({ timeout: 30000 });
    check(cas.url().startsWith(`${base}/demo/cas?ticket=ST-`) && (await cas.content()).includes(`<strong>${username}</strong>`),
      'the CAS ticket comes back to the application, which validates it');
    check((await cas.content()).includes('isFromNewLogin</td><td>true'), 'the first ticket is from a new login');
    await accessible(cas, 'the demo CAS application');
    const service = encodeURIComponent(`${base}/demo/cas`);
    await cas.goto(`${base}/cas/login?service=${service}&method=POST`);
    await cas.waitForURL(`${base}/demo/cas`, { timeout: 30000 });
    await cas.getByRole('status').waitFor({ timeout: 30000 });
    check((await cas.content()).includes('isFromNewLogin</td><td>false'),
      'method=POST: the auto-submitted form carried an SSO ticket to the application');
    await cas.goto(`${base}/cas/logout?service=${service}`);
    check(cas.url().startsWith(`${base}/login?flow=`), 'CAS logout returns to the registered application, which asks to sign in again');
    await casContext.close();

    // A phone-sized screen, in English.
    const phone = await browser.newContext({ locale: 'en-GB', viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true });
    const mobile = await phone.newPage();
    for (const path of ['/login', '/activate', '/password/forgot']) {
      await mobile.goto(`${base}${path}`);
      const fits = await mobile.evaluate(() => document.scrollingElement.scrollWidth <= window.innerWidth + 1);
      check(fits, `${path} fits a 360 px wide screen without sideways scrolling`);
      await accessible(mobile, `${path} in English on a phone`);
    }
    await mobile.goto(`${base}/login`);
    check((await mobile.title()).startsWith('Sign in'), 'the login page follows an English browser');
    await phone.close();
    await context.close();
  } finally {
    await browser.close();
    child.kill('SIGTERM');
  }
  const code = await new Promise((resolve) => child.on('exit', resolve));
  check(code === 0, 'the demo stops cleanly on SIGTERM');
  summary();
}

main().catch(abort);
