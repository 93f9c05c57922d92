// A small client of classic WebDriver (the W3C protocol WebKitWebDriver speaks), over fetch:
// WebKitGTK's MiniBrowser under Xvfb, as ../shared/TOOLCHAIN.md describes it. Only what the
// WebKit test uses: a session, navigation, elements, keys (file paths too), clicks, scripts.

import { spawn } from 'node:child_process';
import net from 'node:net';

export const WEBKIT_DRIVER = process.env.WEBKIT_DRIVER ?? '/usr/bin/WebKitWebDriver';
export const MINIBROWSER = process.env.MINIBROWSER ?? '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

/** A free TCP port on localhost. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts Xvfb and WebKitWebDriver, then a MiniBrowser session (`args` are MiniBrowser's, after
 * `--automation`). Every prompt (a confirm) is accepted, as a user saying yes would.
 */
export async function startWebKit(args = []) {
  const display = `:${90 + Math.floor(Math.random() * 400)}`;
  const xvfb = spawn('Xvfb', [display, '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], { stdio: 'ignore' });
  const port = await freePort();
  const env = { ...process.env, DISPLAY: display };
  const driver = spawn(WEBKIT_DRIVER, [`--port=${port}`], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  driver.stderr.on('data', (d) => log.push(String(d)));
  const base = `http://127.0.0.1:${port}`;
  const stop = () => {
    driver.kill();
    xvfb.kill();
  };
  try {
    for (let i = 0; ; i++) {
      const ready = await fetch(`${base}/status`).then((r) => r.json()).then((j) => j.value?.ready).catch(() => false);
      if (ready) break;
      if (i > 100) throw new Error(`WebKitWebDriver did not start: ${log.join('')}`);
      await sleep(100);
    }
    const wd = new WebDriver(base);
    await wd.start({
      browserName: 'MiniBrowser',
      unhandledPromptBehavior: 'accept',
      'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation', ...args] },
    });
    wd.stopAll = async () => {
      await wd.quit().catch(() => {});
      stop();
    };
    return wd;
  } catch (err) {
    stop();
    throw err;
  }
}

export class WebDriver {
  constructor(base) {
    this.base = base;
    this.session = null;
  }

  async call(method, path, body) {
    const url = this.session ? `${this.base}/session/${this.session}${path}` : `${this.base}${path}`;
    const response = await fetch(url, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok || json.value?.error) {
      throw new Error(`${method} ${path}: ${json.value?.error ?? response.status}: ${json.value?.message ?? ''}`);
    }
    return json.value;
  }

  async start(capabilities) {
    const value = await this.call('POST', '/session', { capabilities: { alwaysMatch: capabilities } });
    this.session = value.sessionId;
  }

  quit() {
    return this.call('DELETE', '');
  }

  go(url) {
    return this.call('POST', '/url', { url });
  }

  refresh() {
    return this.call('POST', '/refresh', {});
  }

  /** Runs `script` (a function body; `arguments` holds `args`) in the page. */
  run(script, ...args) {
    return this.call('POST', '/execute/sync', { script, args });
  }

  /** Runs an async function body in the page and returns what it resolves to. */
  runAsync(script, ...args) {
    const body = `const done = arguments[arguments.length - 1];
      (async (...args) => { ${script} })(...Array.from(arguments).slice(0, -1)).then(done, (e) => done({ __error: String(e) }));`;
    return this.call('POST', '/execute/async', { script: body, args }).then((v) => {
      if (v && v.__error) throw new Error(v.__error);
      return v;
    });
  }

  /** The first element matching `css`, or null. */
  async find(css) {
    const found = await this.call('POST', '/elements', { using: 'css selector', value: css });
    return found.length ? found[0][ELEMENT] : null;
  }

  /** Waits (polling) until `css` matches, failing after `timeout` ms. */
  async waitFor(css, timeout) {
    const started = Date.now();
    for (;;) {
      const id = await this.find(css);
      if (id) return id;
      if (Date.now() - started > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${css}`);
      await sleep(250);
    }
  }

  /** Waits until `script` (a function body) returns something truthy, and returns it. */
  async waitUntil(script, timeout, ...args) {
    const started = Date.now();
    for (;;) {
      const value = await this.run(script, ...args);
      if (value) return value;
      if (Date.now() - started > timeout) throw new Error(`timed out after ${timeout} ms: ${script}`);
      await sleep(250);
    }
  }

  async type(css, text) {
    const id = await this.waitFor(css, 10_000);
    await this.call('POST', `/element/${id}/clear`, {});
    return this.call('POST', `/element/${id}/value`, { text });
  }

  /** Gives a file input these files (their paths, as WebKitWebDriver takes them). */
  async files(css, paths) {
    const id = await this.waitFor(css, 10_000);
    return this.call('POST', `/element/${id}/value`, { text: paths.join('\n') });
  }

  async click(css) {
    const id = await this.waitFor(css, 10_000);
    return this.call('POST', `/element/${id}/click`, {});
  }

  async text(css) {
    const id = await this.waitFor(css, 10_000);
    return this.call('GET', `/element/${id}/text`);
  }

  async attribute(css, name) {
    const id = await this.waitFor(css, 10_000);
    return this.call('GET', `/element/${id}/attribute/${name}`);
  }
}
