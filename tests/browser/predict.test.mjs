// The built app (dist/, from `make dist`) in headless Chromium with WebGPU on SwiftShader:
// it classifies the golden coffee photo like PyTorch does, rejects a broken file by name, keeps
// the weights in the Cache API across a reload, and never talks to anything but localhost.
//
// Run: `make test-browser` (or `node --test tests/browser/` after `make dist`).
// SHOTS_DIR=/some/dir also saves screenshots at 1280 and 360 px wide.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const distDir = path.join(repoRoot, 'dist');
const goldenDir = path.resolve(repoRoot, '../shared/golden');
const coffeePath = path.join(goldenDir, 'coffee_orig.png');
const golden = JSON.parse(fs.readFileSync(path.join(goldenDir, 'golden.json'), 'utf8'));
const coffeeTop1 = golden.images.coffee.top5[0];
const PROB_TOLERANCE = 0.02;
const BAD_FILE = 'not-a-photo.jpg';

// First WebGPU shader compiles on SwiftShader (a CPU) are slow; these are ceilings, not waits.
const READY_TIMEOUT = 5 * 60_000;
const PREDICT_TIMEOUT = 8 * 60_000;
const TEST_TIMEOUT = 20 * 60_000;

// From ../shared/TOOLCHAIN.md: WebGPU on SwiftShader, and no background traffic of Chromium's own.
const CHROMIUM_ARGS = [
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
];

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

/** A plain static server for dist/, like a teacher's web space (Content-Length, no compression). */
function serveDist() {
  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      let file = path.normalize(path.join(distDir, decodeURIComponent(url.pathname)));
      if (!file.startsWith(distDir)) {
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
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** True for URLs that stay on this machine (blob: and data: never touch the network). */
function isLocal(url) {
  const { protocol, hostname } = new URL(url);
  if (protocol === 'blob:' || protocol === 'data:') return true;
  return ['127.0.0.1', 'localhost', '[::1]'].includes(hostname);
}

describe('the app in headless Chromium (WebGPU on SwiftShader)', { timeout: TEST_TIMEOUT }, () => {
  let server, baseUrl, context, page, tmpDir;
  const requests = [];
  const consoleLines = [];
  let crashed = null;

  before(async () => {
    assert.ok(fs.existsSync(path.join(distDir, 'index.html')), 'dist/ is missing: run `make dist` first');
    server = await serveDist();
    baseUrl = `http://127.0.0.1:${server.address().port}/`;
    tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'finetune-browser-'));
    // A fresh profile: an empty Cache API, so the first visit really downloads the weights.
    context = await chromium.launchPersistentContext(path.join(tmpDir, 'profile'), {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
    context.on('request', (req) => requests.push(req.url()));
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => consoleLines.push(`[${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => {
      crashed = err;
      consoleLines.push(`[pageerror] ${err.message}`);
    });
  });

  after(async () => {
    await context?.close();
    server?.close();
    if (tmpDir) await fsp.rm(tmpDir, { recursive: true, force: true });
  });

  /** Runs a step; on failure prints what the page logged, which is most of the diagnosis. */
  async function step(name, fn) {
    try {
      return await fn();
    } catch (err) {
      console.log(`--- ${name} failed; page console:\n${consoleLines.join('\n') || '(empty)'}`);
      if (crashed) console.log(`--- uncaught page error: ${crashed.stack ?? crashed}`);
      throw err;
    }
  }

  /** Waits for a selector, but gives up at once if the page throws (e.g. a wasm panic). */
  async function waitFor(selector, timeout) {
    const started = Date.now();
    while (true) {
      if (crashed) throw new Error(`page error while waiting for ${selector}: ${crashed.message}`);
      const found = await page.$(selector);
      if (found) return found;
      if (Date.now() - started > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${selector}`);
      await page.waitForTimeout(250);
    }
  }

  async function waitUntilReady() {
    const backend = await waitFor('[data-testid="backend-status"][data-ready="true"]', READY_TIMEOUT);
    const weights = await waitFor('[data-testid="weights-status"][data-ready="true"]', READY_TIMEOUT);
    return { adapter: (await backend.textContent()).trim(), weights: (await weights.textContent()).trim() };
  }

  async function classifyCoffee() {
    const badPath = path.join(tmpDir, BAD_FILE);
    await fsp.writeFile(badPath, 'This is a text file with a photo name.\n');
    await page.setInputFiles('[data-testid="predict-input"]', [coffeePath, badPath]);
    const top1 = await waitFor(
      `[data-testid="prediction-top1"][data-file="${path.basename(coffeePath)}"]`,
      PREDICT_TIMEOUT,
    );
    await waitFor(`[data-testid="file-error"][data-file="${BAD_FILE}"]`, PREDICT_TIMEOUT);
    return top1;
  }

  it('classifies the coffee photo like PyTorch, rejects the broken file, stays on localhost', async () => {
    await step('first visit', async () => {
      await page.goto(baseUrl);
      const { adapter, weights } = await waitUntilReady();
      console.log(`adapter: ${adapter}`);
      console.log(`weights: ${weights}`);
      assert.doesNotMatch(weights, /from cache/, 'a fresh profile must download the weights');

      const top1 = await classifyCoffee();
      const label = (await top1.textContent()).trim();
      const prob = Number(await top1.getAttribute('data-prob'));
      const index = Number(await top1.getAttribute('data-index'));
      console.log(`top-1: ${label} (${index}) p=${prob.toFixed(4)}; PyTorch: ${coffeeTop1.name} p=${coffeeTop1.prob.toFixed(4)}`);
      assert.equal(label, coffeeTop1.name);
      assert.equal(index, coffeeTop1.index);
      assert.ok(
        Math.abs(prob - coffeeTop1.prob) <= PROB_TOLERANCE,
        `top-1 probability ${prob} is not within ${PROB_TOLERANCE} of ${coffeeTop1.prob}`,
      );

      const errors = await page.$$('[data-testid="file-error"]');
      assert.equal(errors.length, 1, 'exactly one file is rejected');
      assert.equal(await errors[0].getAttribute('data-file'), BAD_FILE);
      assert.match(await errors[0].textContent(), new RegExp(BAD_FILE.replace('.', '\\.')));

      const firstMs = Number(await (await waitFor('[data-testid="first-prediction-ms"]', 10_000)).getAttribute('data-ms'));
      assert.equal(firstMs, await page.evaluate(() => Math.round(window.__firstPredictionMs)));
      console.log(`page open to first prediction shown: ${(firstMs / 1000).toFixed(1)} s`);

      if (process.env.SHOTS_DIR) {
        await fsp.mkdir(process.env.SHOTS_DIR, { recursive: true });
        await page.screenshot({ path: path.join(process.env.SHOTS_DIR, 'desktop-1280.png'), fullPage: true });
        await page.setViewportSize({ width: 360, height: 780 });
        await page.screenshot({ path: path.join(process.env.SHOTS_DIR, 'mobile-360.png'), fullPage: true });
        await page.setViewportSize({ width: 1280, height: 900 });
      }

      const outside = requests.filter((url) => !isLocal(url));
      assert.deepEqual(outside, [], 'the page made requests outside localhost');
      assert.equal(crashed, null);
    });
  });

  it('reloads with the weights from the Cache API and classifies again', async () => {
    await step('reload', async () => {
      const before = requests.length;
      await page.reload();
      const { weights } = await waitUntilReady();
      console.log(`weights after reload: ${weights}`);
      assert.match(weights, /from cache/);
      const weightRequests = requests.slice(before).filter((url) => url.includes('/weights/'));
      assert.deepEqual(weightRequests, [], 'a reload must not download the weights again');

      const top1 = await classifyCoffee();
      assert.equal((await top1.textContent()).trim(), coffeeTop1.name);
      assert.ok(Math.abs(Number(await top1.getAttribute('data-prob')) - coffeeTop1.prob) <= PROB_TOLERANCE);
      assert.deepEqual(requests.filter((url) => !isLocal(url)), []);
      assert.equal(crashed, null);
    });
  });
});

describe('the app without WebGPU', { timeout: 2 * 60_000 }, () => {
  let server, browser;
  after(async () => {
    await browser?.close();
    server?.close();
  });

  it('says so, names browsers that have WebGPU, and downloads no weights', async () => {
    server = await serveDist();
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
    });
    const page = await browser.newPage();
    // As in a browser without WebGPU: `navigator.gpu` is undefined.
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    const requests = [];
    page.on('request', (req) => requests.push(req.url()));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const status = page.locator('[data-testid="backend-status"]');
    await status.filter({ hasText: /Chrome/ }).waitFor({ timeout: 60_000 });
    const text = await status.textContent();
    console.log(`without WebGPU: ${text}`);
    assert.match(text, /no WebGPU/);
    assert.match(text, /Safari 26/);
    assert.match(text, /Firefox 141/);
    assert.equal(await status.getAttribute('data-ready'), 'false');
    assert.ok(await page.locator('[data-testid="predict-input"]').isDisabled());
    assert.deepEqual(requests.filter((url) => url.includes('/weights/')), []);
    if (process.env.SHOTS_DIR) {
      await page.setViewportSize({ width: 360, height: 640 });
      await page.screenshot({ path: path.join(process.env.SHOTS_DIR, 'no-webgpu-360.png'), fullPage: true });
    }
  });
});
