// Headless Chromium (Debian's, driven by playwright-core) walks two-step verification as a person
// would (issue 7): enrol an authenticator app at /account from its QR code's key, see the
// recovery codes once, get asked the second factor by an application that requires it (and only
// once per SSO session), have a replayed code refused, register a passkey with Chromium's
// virtual authenticator (Chrome DevTools Protocol `WebAuthn.addVirtualAuthenticator`), use it as
// the second factor, and sign in with it without a password. axe-core checks the new pages.
//
// Usage: node mfa_walk.mjs SESAME_BINARY
// Starts `sesame demo` on a free loopback port with the public URL http://localhost:PORT/
// (WebAuthn refuses an IP address as relying party id) and stops it by PID. Only the loopback
// interface is contacted. Exits non-zero on the first failed check.

import { createHmac } from 'node:crypto';
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, abort, accessible, check, startDemo, summary } from './walk_support.mjs';

// RFC 6238 with SHA-1, 6 digits, 30 s: what an authenticator app computes from the key.
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const out = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
}
function totp(key, seconds) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / 30)));
  const mac = createHmac('sha1', base32(key)).update(counter).digest();
  const offset = mac[19] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}

async function signInWithPassword(page, base, username, password) {
  await page.goto(`${base}/login`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await submit(page);
}

// Enter in a form, and the page that answers it.
async function submit(page) {
  await Promise.all([page.waitForNavigation({ timeout: 30000 }), page.keyboard.press('Enter')]);
}

async function signOut(page, base) {
  await page.goto(`${base}/logout`);
  await page.click('form[action="/logout"] button[type=submit]');
  await page.getByRole('status').waitFor({ timeout: 30000 });
}

async function main() {
  const binary = resolve(process.argv[2]);
  const { child, base, banner } = await startDemo(binary, 'localhost');
  const login = banner.match(/^\s+(\S+)\s+password: (.+?)\s{2,}student/m);
  check(login !== null, 'the demo prints a student account and its password');
  const [, username, password] = login;
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  try {
    const context = await browser.newContext({ locale: 'fr-FR' });
    const page = await context.newPage();
    // A virtual platform authenticator with user verification, in this tab.
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
    });

    // The account page, signed in with the password.
    await signInWithPassword(page, base, username, password);
    await page.goto(`${base}/account`);
    check((await page.title()).startsWith('Mon compte'), `the account page opens for a signed-in person (${await page.title()} ${page.url()})`);
    check((await page.textContent('#account_login')).trim() === username, 'it shows the identifier');
    await accessible(page, 'the account page');

    // Enrol an authenticator app from the key shown beside the QR code.
    await page.click('#totp_add');
    check(await page.locator('figure.qr svg').count() === 1, 'the enrolment shows a QR code');
    await accessible(page, 'the TOTP enrolment page');
    const key = (await page.textContent('#totp_secret')).trim();
    const enrolledAt = Date.now() / 1000;
    const enrolmentCode = totp(key, enrolledAt);
    await page.fill('#code', enrolmentCode);
    await submit(page);
    const codes = await page.locator('#recovery_codes code').allTextContents();
    check(codes.length === 10, `ten recovery codes are shown once (${codes.length})`);
    await accessible(page, 'the recovery codes page');

    // A passkey, registered with the virtual authenticator.
    await page.goto(`${base}/account`);
    await page.fill('#passkey_name', 'Chromium');
    await page.click('[data-passkey=register]');
    await page.getByRole('status').waitFor({ timeout: 30000 });
    check((await page.content()).includes('La clé d\'accès est enregistrée') || (await page.content()).includes('La clé d&#39;accès est enregistrée'),
      'a passkey is registered through WebAuthn');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    check(credentials.length === 1 && credentials[0].isResidentCredential, 'the authenticator holds one discoverable credential');
    check((await page.content()).includes('Chromium'), 'the account page lists the passkey by its name');
    await signOut(page, base);

    // An application that requires MFA: the password, then the second factor; the code typed at
    // enrolment is refused, a recovery code passes.
    await page.goto(`${base}/demo/cas-mfa`);
    await page.fill('#username', username);
    await page.fill('#password', password);
    await submit(page);
    await page.waitForURL(/\/login\/mfa/, { timeout: 30000 });
    check(!(await context.cookies()).some((c) => c.name === 'sesame'), 'no session exists before the second factor');
    await accessible(page, 'the second-factor page');
    await page.fill('#code', enrolmentCode);
    await submit(page);
    check((await page.locator('[role=alert]').first().textContent()).includes('pas valable'), 'a replayed code is refused');
    await page.fill('#code', codes[0]);
    await submit(page);
    await page.getByRole('status').waitFor({ timeout: 30000 });
    check(page.url().startsWith(`${base}/demo/cas-mfa?ticket=ST-`), `the MFA application gets its ticket (${page.url()})`);
    check((await page.content()).includes('https://refeds.org/profile/mfa'), 'its validation says the MFA profile');
    // Once per SSO session: the application again, without asking.
    await page.goto(`${base}/demo/cas-mfa`);
    await page.getByRole('status').waitFor({ timeout: 30000 });
    check(page.url().startsWith(`${base}/demo/cas-mfa?ticket=ST-`), 'the second visit is not asked again');
    await signOut(page, base);

    // The passkey as the second factor.
    await signInWithPassword(page, base, username, password);
    await page.waitForURL(/\/login\/mfa/, { timeout: 30000 });
    await page.click('[data-passkey=second]');
    await page.getByRole('heading', { name: 'Vous êtes connecté' }).waitFor({ timeout: 30000 });
    check(true, 'the passkey passes as the second factor');
    await signOut(page, base);

    // Passwordless: "Se connecter avec une clé d'accès".
    await page.goto(`${base}/login`);
    await page.getByRole('button', { name: 'Se connecter avec une clé d\'accès' }).click();
    await page.getByRole('heading', { name: 'Vous êtes connecté' }).waitFor({ timeout: 30000 });
    check((await page.content()).includes(username), 'a passkey signs in without a password');
    // And an MFA application takes that session as it is.
    await page.goto(`${base}/demo/cas-mfa`);
    await page.getByRole('status').waitFor({ timeout: 30000 });
    check(page.url().startsWith(`${base}/demo/cas-mfa?ticket=ST-`), 'a passkey session satisfies the MFA application');

    // Without JavaScript the password form still works and no passkey button shows.
    const plain = await browser.newContext({ locale: 'fr-FR', javaScriptEnabled: false });
    const noscript = await plain.newPage();
    await noscript.goto(`${base}/login`);
    check(await noscript.locator('#passkey_form').isHidden(), 'without JavaScript the passkey form stays hidden');
    await plain.close();

    // The account page on a phone-sized screen.
    const phone = await browser.newContext({ locale: 'en-GB', viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true });
    const mobile = await phone.newPage();
    await signInWithPassword(mobile, base, 'jose.oconnor', 'tuba orange sous la pluie');
    await mobile.goto(`${base}/account`);
    check((await mobile.title()).startsWith('My account'), 'the account page follows an English browser');
    const fits = await mobile.evaluate(() => document.scrollingElement.scrollWidth <= window.innerWidth + 1);
    check(fits, '/account fits a 360 px wide screen without sideways scrolling');
    await accessible(mobile, '/account in English on a phone');
    await phone.close();
    await context.close();
  } finally {
    await browser.close();
    child.kill('SIGTERM');
  }
  const code = await new Promise((done) => child.on('exit', done));
  check(code === 0, 'the demo stops cleanly on SIGTERM');
  summary();
}

main().catch(abort);
