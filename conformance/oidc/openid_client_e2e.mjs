// End-to-end check of the OpenID Connect provider with an OpenID-certified relying party library:
// panva's openid-client (v6, certified Basic, Config, RP-Initiated Logout RP profiles) and jose,
// against the real `sesame demo` binary, with Debian's Chromium (driven by playwright-core) as the
// person's browser. Clients are registered from the outside with `sesame client add`, some before
// the server starts and some while it runs.
//
// It checks (DESIGN.md §7): discovery (the issuer byte for byte, the advertised features); the
// authorization code flow with PKCE S256, state and nonce through the hosted login page; the ID
// token validated by openid-client (and its signature by jose against the JWKS); userinfo for
// `openid profile email`; introspection and revocation; refresh with rotation (the old refresh
// token then fails with invalid_grant, and its reuse revokes the family); RP-initiated logout
// (id_token_hint + post_logout_redirect_uri + state, the SSO session gone); back-channel logout
// (a logout+jwt POSTed by the outbox to a small receiver here, verified with jose); a public
// client with PKCE (and without it, refused); the consent page of a client that is not
// first-party (allow, remembered, prompt=consent, deny).
//
// Usage: node openid_client_e2e.mjs SESAME_BINARY
// Starts `sesame demo` on a free loopback port with a fresh data directory and a relying-party
// HTTP server on another; stops both by PID. Only 127.0.0.1 is contacted. Exits non-zero on the
// first failed check (SESAME_E2E_KEEP_GOING=1: go on and count the failures, for diagnosis).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as client from 'openid-client';
import * as jose from 'jose';
import { chromium } from 'playwright-core';

const USER = 'ana.menard';
const PASSWORD = 'cheval agrafe pile correcte';
const USER_EMAIL = 'ana.menard@etu.uca.fr'; // the demo's `mail` attribute (cas_e2e.py reads it too)
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const KEEP_GOING = process.env.SESAME_E2E_KEEP_GOING === '1';

let passed = 0;
let failed = 0;
let demo = null; // the server, stopped on any failure
let receiver = null; // the relying party's HTTP server

function stopAll() {
  demo?.kill('SIGTERM');
  receiver?.close();
}

function check(condition, what) {
  if (!condition) {
    failed += 1;
    console.error(`FAILED: ${what}`);
    if (!KEEP_GOING) {
      stopAll();
      console.log(`${passed} passed, ${failed} failed`);
      process.exit(1);
    }
    return false;
  }
  passed += 1;
  console.log(`ok - ${what}`);
  return true;
}

// What the browser's console said went wrong (a blocked navigation says why there), for the
// failure messages.
const consoleErrors = [];

// A step whose exception (an openid-client error, a timeout) is a failed check, not a crash.
async function section(name, body, needs = true) {
  if (!needs) {
    check(false, `${name}: not run, an earlier step it needs failed`);
    return;
  }
  const seen = consoleErrors.length;
  try {
    await body();
  } catch (error) {
    await sleep(500); // the console message of a blocked navigation may come after the error
    const cause = error?.cause ? ` (cause: ${JSON.stringify(error.cause).slice(0, 600)})` : '';
    const console = consoleErrors.slice(seen).filter((line) => !line.includes('favicon') && !line.includes('404'));
    check(false, `${name}: ${error?.name ?? ''} ${error?.message ?? error}${cause}${console.length ? `\n  browser console: ${console.join('\n  browser console: ')}` : ''}`);
  }
}

// The error an openid-client call throws, or null when it succeeds.
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return error;
  }
}

// `aud` is one string or an array of them (OpenID Connect Core §2).
function audienceIs(claims, clientId) {
  return claims.aud === clientId || (Array.isArray(claims.aud) && claims.aud.includes(clientId));
}

function freePort() {
  return new Promise((done) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

// ---- the server and its CLI ----------------------------------------------------------------

function sesameEnv(work, base) {
  return {
    PATH: process.env.PATH,
    SESAME_DATA_DIR: join(work, 'data'),
    SESAME_KEYS__DIR: join(work, 'keys'),
    SESAME_LOG__LEVEL: 'warn',
    SESAME_SERVER__PUBLIC_URL: `${base}/`,
    SESAME_OIDC__ALLOW_HTTP_REDIRECTS: 'true',
    // The outboxes (mail, CAS single logout, back-channel logout) are sent every
    // mail.send_interval, and the maintenance pass runs every maintenance.interval: short here so
    // a back-channel logout leaves within a second or two.
    SESAME_MAIL__SEND_INTERVAL: '1s',
    SESAME_MAINTENANCE__INTERVAL: '1s',
  };
}

// `sesame client add ID …`; returns the client secret (null for a public client).
function addClient(binary, work, env, id, args, { json = true } = {}) {
  const result = spawnSync(binary, ['client', 'add', id, ...args, ...(json ? ['--json'] : [])],
    { cwd: work, env, encoding: 'utf8' });
  check(result.status === 0, `sesame client add ${id}${json ? ' --json' : ''} (${result.stderr.trim() || 'exit 0'})`);
  if (json) {
    const printed = JSON.parse(result.stdout);
    return printed.client_secret;
  }
  const line = result.stdout.match(/^client secret: (\S+)\s*$/m);
  check(line !== null, `without --json, the secret is printed on a "client secret:" line`);
  return line?.[1] ?? null;
}

async function startDemo(binary, work, env, port) {
  const child = spawn(binary, ['demo', '--listen', `127.0.0.1:${port}`], {
    cwd: work, env, stdio: ['ignore', 'pipe', 'inherit'],
  });
  let banner = '';
  await new Promise((done, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner: ${banner}`)), 60000);
    child.stdout.on('data', (chunk) => {
      banner += chunk;
      if (banner.includes('listening on')) {
        clearTimeout(timer);
        done();
      }
    });
    child.on('exit', (code) => reject(new Error(`sesame exited (${code}): ${banner}`)));
  });
  return child;
}

// ---- the relying party's own HTTP server ---------------------------------------------------

// Answers every GET with a small page (the callbacks and the post-logout page), and records the
// back-channel logout POSTs it receives under /backchannel/.
function startRelyingParty(port) {
  const logouts = [];
  const server = createHttpServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      if (request.method === 'POST' && request.url.startsWith('/backchannel/')) {
        logouts.push({ path: request.url, contentType: request.headers['content-type'] ?? '', body });
        response.writeHead(200, { 'cache-control': 'no-store' });
        response.end();
        return;
      }
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end('<!doctype html><html lang="en"><title>relying party</title><p>relying party</p></html>');
    });
  });
  return new Promise((done) => server.listen(port, '127.0.0.1', () => done({ server, logouts })));
}

// The first back-channel logout received at `path` after `since` entries, within `seconds`.
async function backchannelLogout(logouts, path, since, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const found = logouts.slice(since).find((l) => l.path === path);
    if (found) return found;
    await sleep(250);
  }
  return null;
}

// ---- the browser ---------------------------------------------------------------------------

async function newContext(browser) {
  const context = await browser.newContext({ locale: 'fr-FR' });
  context.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text().trim());
  });
  return context;
}

async function submitLogin(page) {
  await page.fill('input[name=username]', USER);
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 30000 }),
    page.press('input[name=password]', 'Enter')]);
}

async function onLoginPage(page, base) {
  return page.url().startsWith(`${base}/login?flow=`) && await page.locator('input[name=password]').count() === 1;
}

function consentForm(page) {
  return page.locator('form[action$="/oidc/consent"]');
}

async function decide(page, decision) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 30000 }),
    page.click(`form[action$="/oidc/consent"] button[name=decision][value=${decision}]`)]);
}

// One authorization request's checks and its URL.
function authorization(config, redirectUri, extra = {}) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const state = extra.state ?? client.randomState();
  const nonce = client.randomNonce();
  return client.calculatePKCECodeChallenge(pkceCodeVerifier).then((challenge) => ({
    url: client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri, scope: 'openid profile email', code_challenge: challenge,
      code_challenge_method: 'S256', state, nonce, ...extra.parameters,
    }).href,
    checks: { pkceCodeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true },
    state,
  }));
}

async function main() {
  const binary = resolve(process.argv[2]);
  const work = mkdtempSync(join(tmpdir(), 'sesame-oidc-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const rpPort = await freePort();
  const rp = `http://127.0.0.1:${rpPort}`;
  const env = sesameEnv(work, base);
  const relyingParty = await startRelyingParty(rpPort);
  receiver = relyingParty.server;
  const { logouts } = relyingParty;

  // Clients registered before the server starts.
  const rpSecret = addClient(binary, work, env, 'rp', [
    '--name', 'Relying party', '--redirect-uri', `${rp}/cb`, '--post-logout-redirect-uri', `${rp}/bye`,
    '--backchannel-logout-uri', `${rp}/backchannel/rp`, '--first-party']);
  check(typeof rpSecret === 'string' && rpSecret.length >= 32, 'a confidential client gets a secret (--json)');
  const partner2Secret = addClient(binary, work, env, 'partner2', [
    '--name', 'Partenaire deux', '--redirect-uri', `${rp}/partner2/cb`]);

  demo = await startDemo(binary, work, env, port);
  check(true, 'sesame demo starts');

  // Clients registered while it runs: a public one, and a partner (not first-party) whose secret
  // is read from the text output.
  const spaSecret = addClient(binary, work, env, 'spa', [
    '--name', 'Application monopage', '--redirect-uri', `${rp}/spa/cb`, '--public', '--auth-method', 'none',
    '--first-party']);
  check(spaSecret === null, 'a public client has no secret');
  const partnerSecret = addClient(binary, work, env, 'partner', [
    '--name', 'Partenaire', '--redirect-uri', `${rp}/partner/cb`, '--auth-method', 'client_secret_post'],
  { json: false });
  // A node may cache the client registry for a second (as it does the CAS services).
  await sleep(1500);

  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  try {
    const insecure = { execute: [client.allowInsecureRequests] }; // http on loopback
    let metadata = null;
    let config = null;
    let jwks = null;
    const tokenResponses = []; // the Cache-Control of each token issued to rp

    await section('discovery', async () => {
      const response = await fetch(`${base}/.well-known/openid-configuration`);
      metadata = await response.json();
      check(response.status === 200 && metadata.issuer === base,
        `discovery: the issuer is the public URL without its slash, byte for byte (${JSON.stringify(metadata.issuer)})`);
      for (const [name, path] of [['authorization_endpoint', '/oidc/authorize'], ['token_endpoint', '/oidc/token'],
        ['userinfo_endpoint', '/oidc/userinfo'], ['jwks_uri', '/oidc/jwks'], ['end_session_endpoint', '/oidc/logout'],
        ['revocation_endpoint', '/oidc/revoke'], ['introspection_endpoint', '/oidc/introspect']]) {
        check(metadata[name] === base + path, `discovery: ${name} is ${base}${path} (${metadata[name]})`);
      }
      check(metadata.backchannel_logout_supported === true && metadata.backchannel_logout_session_supported === true,
        'discovery: back-channel logout with sid is advertised');
      check(JSON.stringify(metadata.code_challenge_methods_supported) === '["S256"]',
        `discovery: PKCE S256 only (${JSON.stringify(metadata.code_challenge_methods_supported)})`);
      check(metadata.authorization_response_iss_parameter_supported === true,
        'discovery: the authorization response carries iss (RFC 9207)');
      check(Array.isArray(metadata.response_types_supported) && metadata.response_types_supported.includes('code')
        && !metadata.response_types_supported.some((t) => t.includes('token')),
      `discovery: the code flow only (${JSON.stringify(metadata.response_types_supported)})`);
      config = await client.discovery(new URL(base), 'rp', { redirect_uris: [`${rp}/cb`] },
        client.ClientSecretBasic(rpSecret), insecure);
      check(config.serverMetadata().issuer === base, 'openid-client accepts the discovery document');
      client.enableNonRepudiationChecks(config); // openid-client checks the ID tokens' signatures too
      // Every token endpoint answer is kept, to check its caching headers.
      config[client.customFetch] = async (url, options) => {
        const response = await fetch(url, options);
        if (url.startsWith(metadata.token_endpoint) && response.status === 200) {
          tokenResponses.push(response.headers.get('cache-control') ?? '');
        }
        return response;
      };
      jwks = jose.createRemoteJWKSet(new URL(metadata.jwks_uri));
    });

    // ---- the code flow, a confidential client (first-party: no consent page) -----------------
    const context = await newContext(browser);
    const page = await context.newPage();
    let tokens = null;
    let idClaims = null;
    await section('code flow', async () => {
      const request = await authorization(config, `${rp}/cb`);
      await page.goto(request.url);
      check(await onLoginPage(page, base), `authorize sends an unknown browser to the login page (${page.url()})`);
      await submitLogin(page);
      const back = new URL(page.url());
      check(page.url().startsWith(`${rp}/cb?`), `after the login form, the browser is back at the redirect URI (${page.url().slice(0, 80)})`);
      check(back.searchParams.get('state') === request.state && back.searchParams.get('iss') === base
        && back.searchParams.has('code'), 'the response carries code, the same state and iss (RFC 9207)');
      tokens = await client.authorizationCodeGrant(config, back, request.checks);
      idClaims = tokens.claims();
      check(idClaims.iss === base && audienceIs(idClaims, 'rp'),
        'openid-client validates the ID token (signature, iss, aud, exp, nonce, PKCE)');
      check(typeof idClaims.sid === 'string' && idClaims.sid.length > 0 && typeof idClaims.auth_time === 'number',
        `the ID token carries sid and auth_time (${Object.keys(idClaims).sort().join(' ')})`);
      check(tokens.token_type?.toLowerCase() === 'bearer' && typeof tokens.expires_in === 'number'
        && typeof tokens.refresh_token === 'string', 'the token response has a bearer token, expires_in and a refresh token');
      const { payload, protectedHeader } = await jose.jwtVerify(tokens.id_token, jwks,
        { issuer: base, audience: 'rp', algorithms: ['RS256'] });
      check(protectedHeader.alg === 'RS256' && typeof protectedHeader.kid === 'string' && payload.sub === idClaims.sub,
        `jose verifies the ID token against the JWKS (RS256, kid ${protectedHeader.kid})`);
    }, config !== null);

    await section('userinfo', async () => {
      const info = await client.fetchUserInfo(config, tokens.access_token, idClaims.sub);
      check(info.preferred_username === USER, `userinfo: preferred_username ${info.preferred_username}`);
      check(info.email === USER_EMAIL && typeof info.email_verified === 'boolean',
        `userinfo: email ${info.email}, email_verified ${info.email_verified}`);
      check(typeof info.name === 'string' && typeof info.given_name === 'string' && typeof info.family_name === 'string',
        `userinfo: name, given_name, family_name (${info.name})`);
      const form = await fetch(metadata.userinfo_endpoint, {
        method: 'POST', body: new URLSearchParams({ access_token: tokens.access_token }),
      });
      const formInfo = form.status === 200 ? await form.json() : {};
      check(formInfo.sub === idClaims.sub, `userinfo also takes the token as a form field (${form.status})`);
      const bad = await fetch(metadata.userinfo_endpoint, { headers: { authorization: 'Bearer not-a-token' } });
      check(bad.status === 401 && /invalid_token/.test(bad.headers.get('www-authenticate') ?? ''),
        `an unknown access token gets 401 with WWW-Authenticate error="invalid_token" (${bad.status})`);
    }, tokens !== null);

    await section('refresh', async () => {
      const old = tokens.refresh_token;
      const refreshed = await client.refreshTokenGrant(config, old);
      check(typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== old
        && refreshed.access_token !== tokens.access_token, 'refresh: a new access token and a rotated refresh token');
      const info = await client.fetchUserInfo(config, refreshed.access_token, idClaims.sub);
      check(info.preferred_username === USER, 'the refreshed access token works at userinfo');
      const reuse = await failure(client.refreshTokenGrant(config, old));
      check(reuse?.error === 'invalid_grant', `the old refresh token now fails with invalid_grant (${reuse?.error ?? 'accepted'})`);
      const family = await failure(client.refreshTokenGrant(config, refreshed.refresh_token));
      check(family?.error === 'invalid_grant', `its reuse revoked the family: the newer one fails too (${family?.error ?? 'accepted'})`);
      check(tokenResponses.length >= 2 && tokenResponses.every((value) => /\bno-store\b/.test(value)),
        `every token response has Cache-Control: no-store (RFC 6749 §5.1) (${[...new Set(tokenResponses)].join(' | ')})`);
    }, tokens !== null);

    // ---- RP-initiated logout, and the back-channel logout it causes ----------------------------
    await section('RP-initiated logout', async () => {
      const since = logouts.length;
      const state = client.randomState();
      const endSession = client.buildEndSessionUrl(config, {
        id_token_hint: tokens.id_token, post_logout_redirect_uri: `${rp}/bye`, state,
      });
      await page.goto(endSession.href);
      const landed = new URL(page.url());
      check(page.url().startsWith(`${rp}/bye?`) && landed.searchParams.get('state') === state,
        `end_session returns to the post-logout URI with the same state (${page.url().slice(0, 80)})`);
      const request = await authorization(config, `${rp}/cb`);
      await page.goto(request.url);
      check(await onLoginPage(page, base), 'the SSO session is gone: a new authorize shows the login form');
      const silent = await authorization(config, `${rp}/cb`, { parameters: { prompt: 'none' } });
      await page.goto(silent.url);
      const error = new URL(page.url());
      check(page.url().startsWith(`${rp}/cb?`) && error.searchParams.get('error') === 'login_required'
        && error.searchParams.get('state') === silent.state,
      `prompt=none without a session: error=login_required (${page.url().slice(0, 100)})`);

      // The ended session had rp, which registered a back-channel logout URI.
      const logout = await backchannelLogout(logouts, '/backchannel/rp', since);
      check(logout !== null, 'a back-channel logout reaches rp after the RP-initiated logout');
      if (logout) await verifyLogoutToken(logout, base, jwks, 'rp', idClaims);
    }, tokens !== null);

    // ---- back-channel logout after a logout at Sésame itself -----------------------------------
    await section('back-channel logout', async () => {
      const second = await newContext(browser);
      const tab = await second.newPage();
      const request = await authorization(config, `${rp}/cb`);
      await tab.goto(request.url);
      await submitLogin(tab);
      const again = await client.authorizationCodeGrant(config, new URL(tab.url()), request.checks);
      const claims = again.claims();
      check(claims.sid !== idClaims.sid, 'a new SSO session has a new sid');
      const since = logouts.length;
      await tab.goto(`${base}/logout`);
      await Promise.all([tab.waitForNavigation({ waitUntil: 'load', timeout: 30000 }),
        tab.click('form[action$="/logout"] button[type=submit]')]);
      check(!(await second.cookies()).some((c) => c.name === 'sesame'), 'the user signs out at Sésame (POST /logout)');
      const logout = await backchannelLogout(logouts, '/backchannel/rp', since);
      check(logout !== null, 'the outbox delivers a back-channel logout to rp');
      if (logout) await verifyLogoutToken(logout, base, jwks, 'rp', claims);
      await second.close();
    }, config !== null);
    await context.close();

    // ---- a public client: PKCE, no secret ------------------------------------------------------
    await section('public client', async () => {
      const spa = await client.discovery(new URL(base), 'spa', { redirect_uris: [`${rp}/spa/cb`] }, client.None(), insecure);
      const ctx = await newContext(browser);
      const tab = await ctx.newPage();
      // A state with characters that need escaping: it must come back unchanged (RFC 6749 §4.1.2).
      const request = await authorization(spa, `${rp}/spa/cb`, { state: `${client.randomState()} /?&=é~` });
      await tab.goto(request.url);
      check(await onLoginPage(tab, base), 'the public client\'s authorize shows the login page');
      await submitLogin(tab);
      const back = new URL(tab.url());
      check(back.searchParams.get('state') === request.state, `the state comes back byte for byte (${back.searchParams.get('state')})`);
      const result = await client.authorizationCodeGrant(spa, back, request.checks);
      check(audienceIs(result.claims(), 'spa') && typeof result.access_token === 'string',
        'a public client redeems its code with its PKCE verifier and no secret');
      const info = await client.fetchUserInfo(spa, result.access_token, result.claims().sub);
      check(info.preferred_username === USER, 'the public client reads userinfo');

      // A replayed code fails, and what the first redemption produced is revoked (RFC 6749 §4.1.2).
      const replay = await failure(client.authorizationCodeGrant(spa, back, request.checks));
      check(replay?.error === 'invalid_grant', `a code is redeemed only once (${replay?.error ?? 'accepted'})`);
      const revoked = await failure(client.fetchUserInfo(spa, result.access_token, result.claims().sub));
      check(revoked !== null, `the replay revoked the first access token (userinfo: ${revoked?.constructor?.name ?? 'accepted'})`);

      // Without a code challenge: RFC 7636 §4.4.1, error=invalid_request at the redirect URI.
      const bare = client.buildAuthorizationUrl(spa, {
        redirect_uri: `${rp}/spa/cb`, scope: 'openid', state: 'sans-pkce', nonce: client.randomNonce(),
      });
      await tab.goto(bare.href);
      const refused = new URL(tab.url());
      check(tab.url().startsWith(`${rp}/spa/cb?`) && refused.searchParams.get('error') === 'invalid_request'
        && refused.searchParams.get('state') === 'sans-pkce',
      `a public client without PKCE gets error=invalid_request (${tab.url().slice(0, 100)})`);
      await ctx.close();
    });

    // ---- consent for a client that is not first-party ------------------------------------------
    await section('consent', async () => {
      const partner = await client.discovery(new URL(base), 'partner', { redirect_uris: [`${rp}/partner/cb`] },
        client.ClientSecretPost(partnerSecret), insecure);
      const ctx = await newContext(browser);
      const tab = await ctx.newPage();
      const request = await authorization(partner, `${rp}/partner/cb`);
      await tab.goto(request.url);
      await submitLogin(tab);
      check(await consentForm(tab).count() === 1
        && await tab.locator('form[action$="/oidc/consent"] button[name=decision][value=allow]').count() === 1
        && await tab.locator('form[action$="/oidc/consent"] button[name=decision][value=deny]').count() === 1,
      `after the login, a partner's request shows the consent page (${tab.url().slice(0, 80)})`);
      await decide(tab, 'allow');
      check(tab.url().startsWith(`${rp}/partner/cb?`), 'allow continues to the redirect URI');
      const result = await client.authorizationCodeGrant(partner, new URL(tab.url()), request.checks);
      check(audienceIs(result.claims(), 'partner'), 'the partner redeems its code (client_secret_post)');

      // Introspection (RFC 7662) and revocation (RFC 7009) of the partner's access token.
      const active = await client.tokenIntrospection(partner, result.access_token);
      check(active.active === true && (active.client_id ?? 'partner') === 'partner'
        && (active.sub ?? result.claims().sub) === result.claims().sub,
      `introspection: the access token is active (${JSON.stringify(active).slice(0, 160)})`);
      await client.tokenRevocation(partner, result.access_token);
      const revoked = await client.tokenIntrospection(partner, result.access_token);
      check(revoked.active === false, `after revocation, introspection says active: false (${JSON.stringify(revoked)})`);
      const refused = await failure(client.fetchUserInfo(partner, result.access_token, result.claims().sub));
      check(refused !== null, `the revoked access token is refused at userinfo (${refused?.constructor?.name ?? 'accepted'})`);

      const next = await authorization(partner, `${rp}/partner/cb`);
      await tab.goto(next.url);
      check(tab.url().startsWith(`${rp}/partner/cb?`) && new URL(tab.url()).searchParams.has('code'),
        'a second authorize does not ask again');
      await client.authorizationCodeGrant(partner, new URL(tab.url()), next.checks);

      const forced = await authorization(partner, `${rp}/partner/cb`, { parameters: { prompt: 'consent' } });
      await tab.goto(forced.url);
      check(await consentForm(tab).count() === 1, 'prompt=consent asks again');

      // Another partner: its consent is its own; deny ends in access_denied (RFC 6749 §4.1.2.1).
      const partner2 = await client.discovery(new URL(base), 'partner2', { redirect_uris: [`${rp}/partner2/cb`] },
        client.ClientSecretBasic(partner2Secret), insecure);
      const denied = await authorization(partner2, `${rp}/partner2/cb`);
      await tab.goto(denied.url);
      check(await consentForm(tab).count() === 1, 'another partner asks for its own consent, without a password (SSO)');
      await decide(tab, 'deny');
      const answer = new URL(tab.url());
      check(tab.url().startsWith(`${rp}/partner2/cb?`) && answer.searchParams.get('error') === 'access_denied'
        && answer.searchParams.get('state') === denied.state,
      `deny returns error=access_denied with the state (${tab.url().slice(0, 100)})`);
      await ctx.close();
    });
  } finally {
    await browser.close();
    receiver.close();
    demo.kill('SIGTERM');
  }
  const code = await new Promise((done) => (demo.exitCode !== null ? done(demo.exitCode) : demo.on('exit', done)));
  check(code === 0, 'the demo stops cleanly on SIGTERM');
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

// OpenID Connect Back-Channel Logout 1.0 §2.4 and §2.6, as the relying party must check it.
async function verifyLogoutToken(logout, base, jwks, clientId, idClaims) {
  check(logout.contentType.split(';')[0].trim() === 'application/x-www-form-urlencoded',
    `the back-channel logout is a form POST (${logout.contentType})`);
  const token = new URLSearchParams(logout.body).get('logout_token');
  check(typeof token === 'string' && token.split('.').length === 3, 'it carries logout_token=<JWT>');
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, { issuer: base, audience: clientId });
  check(protectedHeader.typ === 'logout+jwt', `jose verifies the logout token against the JWKS; typ ${protectedHeader.typ}`);
  check(payload.events !== null && typeof payload.events === 'object'
    && typeof payload.events[BACKCHANNEL_EVENT] === 'object' && payload.events[BACKCHANNEL_EVENT] !== null,
  `events has ${BACKCHANNEL_EVENT}`);
  check(payload.sid === idClaims.sid && payload.sub === idClaims.sub,
    `the logout token's sid and sub are the ID token's (${payload.sid})`);
  check(!('nonce' in payload) && typeof payload.jti === 'string' && typeof payload.iat === 'number'
    && typeof payload.exp === 'number', 'the logout token has jti, iat, exp and no nonce');
}

main().catch((error) => {
  stopAll();
  console.error(error);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
