// Shared by the browser tests: Chromium's flags for WebGPU on SwiftShader, a static server for
// dist/, and the "stays on localhost" check.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const distDir = process.env.DIST_DIR ? path.resolve(process.env.DIST_DIR) : path.join(repoRoot, 'dist');
export const sharedDir = path.resolve(repoRoot, '../shared');

// From ../shared/TOOLCHAIN.md: WebGPU on SwiftShader, and no background traffic of Chromium's own.
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--use-angle=swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // A synthetic camera, allowed without a prompt, for the webcam tests.
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

export const CHROMIUM_PATH = process.env.CHROMIUM ?? '/usr/bin/chromium';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.safetensors': 'application/octet-stream',
};

/** A plain static server for dist/ (Content-Length, no compression) on a free port. A test
 * can answer a path its own way: `server.overrides.set('/sw.js', { status, body, type })`;
 * `mounts` serves other folders beside it (`{ '/bench/': folder }`). */
export function serveDist({ mounts = {} } = {}) {
  const overrides = new Map();
  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const override = overrides.get(url.pathname);
      if (override) {
        res.writeHead(override.status ?? 200, { 'content-type': override.type ?? 'text/plain', 'cache-control': 'no-cache' });
        res.end(override.body ?? '');
        return;
      }
      const [prefix, root] = Object.entries(mounts).find(([p]) => url.pathname.startsWith(p)) ?? ['/', distDir];
      let file = path.normalize(path.join(root, decodeURIComponent(url.pathname.slice(prefix.length - 1))));
      if (!file.startsWith(root)) {
        res.writeHead(403).end();
        return;
      }
      if (url.pathname.endsWith('/')) file = path.join(file, 'index.html');
      const stat = await fsp.stat(file).catch(() => null);
      if (!stat?.isFile()) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      res.writeHead(200, {
        'content-type': MIME[path.extname(file)] ?? 'application/octet-stream',
        'content-length': stat.size,
        'cache-control': 'no-cache',
      });
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).pipe(res);
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  server.overrides = overrides;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** dist/ served on localhost and one headless Chromium, for a suite's `before`; `close()` ends both. */
export async function serveAndLaunch() {
  const server = await serveDist();
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  return {
    server,
    browser,
    close: async () => {
      await browser.close();
      server.close();
    },
  };
}

/** True for URLs that stay on this machine (blob: and data: never touch the network). */
export function isLocal(url) {
  const { protocol, hostname } = new URL(url);
  if (protocol === 'blob:' || protocol === 'data:') return true;
  return ['127.0.0.1', 'localhost', '[::1]'].includes(hostname);
}

/**
 * The built app in a fresh Chromium profile (an empty Cache API), served from dist/ on
 * 127.0.0.1. Records every request and what the page logs; `step` prints the log when a step
 * fails, and `waitFor` gives up at once if the page throws (e.g. a wasm panic).
 */
export async function openApp(tmpPrefix, { acceptDownloads = false, device = 'webgpu' } = {}) {
  if (!fs.existsSync(path.join(distDir, 'index.html'))) throw new Error('dist/ is missing: run `make dist` first');
  const app = { requests: [], consoleLines: [], crashed: null };
  app.server = await serveDist();
  // SwiftShader is a software adapter, where the app would choose its CPU backend: these tests
  // ask for the WebGPU path by address (`device: null` leaves the choice to the app).
  app.baseUrl = `http://127.0.0.1:${app.server.address().port}/${device ? `?device=${device}` : ''}`;
  app.tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), tmpPrefix));
  app.context = await chromium.launchPersistentContext(path.join(app.tmpDir, 'profile'), {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    acceptDownloads,
  });
  app.context.on('request', (req) => app.requests.push(req.url()));
  app.page = app.context.pages()[0] ?? (await app.context.newPage());
  app.page.on('console', (msg) => app.consoleLines.push(`[${msg.type()}] ${msg.text()}`));
  app.page.on('pageerror', (err) => {
    app.crashed = err;
    app.consoleLines.push(`[pageerror] ${err.message}`);
  });
  app.step = async (name, fn) => {
    try {
      return await fn();
    } catch (err) {
      console.log(`--- ${name} failed; page console:\n${app.consoleLines.join('\n') || '(empty)'}`);
      if (app.crashed) console.log(`--- uncaught page error: ${app.crashed.stack ?? app.crashed}`);
      throw err;
    }
  };
  app.waitFor = async (selector, timeout) => {
    const started = Date.now();
    while (true) {
      if (app.crashed) throw new Error(`page error while waiting for ${selector}: ${app.crashed.message}`);
      const found = await app.page.$(selector);
      if (found) return found;
      if (Date.now() - started > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${selector}`);
      await app.page.waitForTimeout(250);
    }
  };
  app.close = async () => {
    await app.context?.close();
    app.server?.close();
    await fsp.rm(app.tmpDir, { recursive: true, force: true });
  };
  return app;
}

export const hymenoptera = path.join(sharedDir, 'datasets/hymenoptera');

/** The first `n` photos of a folder, by name. */
export function firstFiles(dir, n) {
  return fs
    .readdirSync(dir)
    .filter((f) => /\.(jpe?g|png)$/i.test(f))
    .sort()
    .slice(0, n)
    .map((f) => path.join(dir, f));
}

const teach = '[data-testid="teach-section"]';
const classCard = (name) => `${teach} [data-testid="class-card"][data-class-name="${name}"]`;

/** Names the page's two classes ants and bees and adds the first `perClass` training photos of
 * each from hymenoptera; returns once both are decoded. */
export async function addAntsAndBees(page, perClass, timeout) {
  const cards = page.locator(`${teach} [data-testid="class-card"]`);
  await cards.nth(0).locator('[data-testid="class-name-input"]').fill('ants');
  await cards.nth(1).locator('[data-testid="class-name-input"]').fill('bees');
  for (const name of ['ants', 'bees']) {
    await page.setInputFiles(`${classCard(name)} [data-testid="class-file-input"]`, firstFiles(path.join(hymenoptera, `train/${name}`), perClass));
  }
  for (const name of ['ants', 'bees']) {
    const count = page.locator(`${classCard(name)} [data-testid="class-count"]`);
    await count.filter({ hasText: new RegExp(`^${perClass}$`) }).waitFor({ timeout });
  }
}

/** Trains the head alone for `epochs` epochs without augmentation; returns the run's final
 * status element (`data-state` done or failed). */
export async function trainHead(app, epochs, timeout) {
  const { page } = app;
  await page.locator('[data-testid="strategy-select"]').selectOption('head');
  await page.locator('[data-testid="epochs-input"]').fill(String(epochs));
  await page.locator('[data-testid="augment-toggle"]').setChecked(false);
  await app.waitFor('[data-testid="worker-status"][data-state="ready"]', timeout);
  await page.locator('[data-testid="train-button"]').click();
  return Promise.race([
    app.waitFor('[data-testid="train-status"][data-state="done"]', timeout),
    app.waitFor('[data-testid="train-status"][data-state="failed"]', timeout),
  ]);
}
