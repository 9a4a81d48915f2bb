// What the Chromium walks share: the check counter, a free loopback port, `sesame demo` started
// with a fresh data directory, and axe-core (WCAG 2.1 A and AA, serious and critical only).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let passed = 0;
let demo = null; // the server, stopped on any failure

/// One check: counted, or the end of the walk (the demo is stopped).
export function check(condition, what) {
  if (!condition) {
    demo?.kill('SIGTERM');
    console.error(`FAILED: ${what}`);
    console.log(`${passed} passed, 1 failed`);
    process.exit(1);
  }
  passed += 1;
  console.log(`ok - ${what}`);
}

export function summary() {
  console.log(`${passed} passed, 0 failed`);
}

/// Stops the demo after an unexpected error.
export function abort(error) {
  demo?.kill('SIGTERM');
  console.error(error);
  process.exit(1);
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

/// Starts `sesame demo` on 127.0.0.1 and a free port, waits for its banner. `host` is the host of
/// its public URL (`localhost` for WebAuthn, which refuses an IP address as relying party id).
export async function startDemo(binary, host = '127.0.0.1') {
  const work = mkdtempSync(join(tmpdir(), 'sesame-browser-'));
  const port = await freePort();
  const env = {
    PATH: process.env.PATH,
    SESAME_DATA_DIR: join(work, 'data'),
    SESAME_KEYS__DIR: join(work, 'keys'),
    SESAME_LOG__LEVEL: 'warn',
  };
  if (host !== '127.0.0.1') env.SESAME_SERVER__PUBLIC_URL = `http://${host}:${port}/`;
  const child = spawn(binary, ['demo', '--listen', `127.0.0.1:${port}`], {
    cwd: work,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  demo = child;
  let banner = '';
  await new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no banner: ${banner}`)), 60000);
    child.stdout.on('data', (chunk) => {
      banner += chunk;
      if (banner.includes('listening on')) {
        clearTimeout(timer);
        done();
      }
    });
    child.on('exit', (code) => fail(new Error(`sesame exited (${code}): ${banner}`)));
  });
  return { child, base: `http://${host}:${port}`, banner };
}

/// axe-core's serious and critical violations on a page.
export async function axeViolations(page) {
  await page.evaluate(axeSource);
  const results = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

export async function accessible(page, what) {
  const violations = await axeViolations(page);
  check(violations.length === 0, `axe-core finds no serious problem on ${what}${violations.length ? ` (${violations.join('; ')})` : ''}`);
}

/// Debian's Chromium, headless, contacting only the loopback interface.
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost'];
