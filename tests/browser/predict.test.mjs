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
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, distDir, isLocal, openApp, serveAndLaunch, sharedDir } from './helpers.mjs';

const goldenDir = path.join(sharedDir, 'golden');
const coffeePath = path.join(goldenDir, 'coffee_orig.png');
const golden = JSON.parse(fs.readFileSync(path.join(goldenDir, 'golden.json'), 'utf8'));
const coffeeTop1 = golden.images.coffee.top5[0];
const PROB_TOLERANCE = 0.02;
const BAD_FILE = 'not-a-photo.jpg';

// First WebGPU shader compiles on SwiftShader (a CPU) are slow; these are ceilings, not waits.
const READY_TIMEOUT = 5 * 60_000;
const PREDICT_TIMEOUT = 8 * 60_000;
const TEST_TIMEOUT = 20 * 60_000;

describe('the app in headless Chromium (WebGPU on SwiftShader)', { timeout: TEST_TIMEOUT }, () => {
  let app, baseUrl, page, tmpDir, requests;

  before(async () => {
    app = await openApp('finetune-browser-');
    ({ baseUrl, page, tmpDir, requests } = app);
  });

  after(async () => {
    await app?.close();
  });

  const step = (name, fn) => app.step(name, fn);
  const waitFor = (selector, timeout) => app.waitFor(selector, timeout);


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
      assert.equal(app.crashed, null);
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
      // A figure for the device choice: one photo on SwiftShader once its shaders are built.
      console.log(`SwiftShader: ${await top1.evaluate((e) => e.closest('.result').querySelector('.result-body p.small').textContent)}`);
      assert.deepEqual(requests.filter((url) => !isLocal(url)), []);
      assert.equal(app.crashed, null);
    });
  });

  it('offers larger text for a classroom and remembers it', async () => {
    await step('large text', async () => {
      const toggle = page.locator('[data-testid="large-text"]');
      const size = () => page.evaluate(() => getComputedStyle(document.body).fontSize);
      assert.equal(await size(), '16px');
      await toggle.click();
      assert.equal(await size(), '20px');
      await page.reload();
      await waitFor('[data-testid="large-text"][aria-pressed="true"]', 60_000);
      assert.equal(await size(), '20px');
      await page.locator('[data-testid="large-text"]').click();
      assert.equal(await size(), '16px');
    });
  });

  it('opens and classifies with no network after the first visit (service worker)', async () => {
    await step('offline', async () => {
      assert.ok(await page.evaluate(() => navigator.serviceWorker.ready.then(() => true)));
      // The cache is named after this build, so the next build's worker deletes these files.
      const caches = await page.evaluate(() => caches.keys());
      const appCaches = caches.filter((k) => k.startsWith('finetune-app-'));
      assert.equal(appCaches.length, 1, `app caches: ${caches}`);
      assert.match(appCaches[0], /^finetune-app-[0-9a-f]{16}$/, 'the cache names its build');
      await app.context.setOffline(true);
      try {
        await page.reload();
        const { weights } = await waitUntilReady();
        console.log(`weights offline: ${weights}`);
        const top1 = await classifyCoffee();
        assert.equal((await top1.textContent()).trim(), coffeeTop1.name);
      } finally {
        await app.context.setOffline(false);
      }
      assert.equal(app.crashed, null);
    });
  });

  it('keeps the last whole build offline when an update arrives in part (service worker)', async () => {
    await step('interrupted update', async () => {
      const appCaches = async () => (await page.evaluate(() => caches.keys())).filter((k) => k.startsWith('finetune-app-'));
      const before = await appCaches();
      assert.equal(before.length, 1, `app caches: ${before}`);
      // A new build (its worker names another cache) whose wasm does not arrive.
      const next = fs
        .readFileSync(path.join(distDir, 'sw.js'), 'utf8')
        .replace(/^const BUILD = '[0-9a-f]+';$/m, "const BUILD = 'ffffffffffffffff';");
      assert.match(next, /ffffffffffffffff/);
      const wasm = fs.readdirSync(distDir).find((f) => f.endsWith('.wasm'));
      app.server.overrides.set('/sw.js', { body: next, type: 'text/javascript' });
      app.server.overrides.set(`/${wasm}`, { status: 503, body: 'unavailable' });
      try {
        const state = await page.evaluate(async () => {
          const registration = await navigator.serviceWorker.getRegistration();
          await registration.update();
          const worker = registration.installing ?? registration.waiting;
          if (!worker) return 'no new worker';
          if (worker.state !== 'installing') return worker.state;
          return new Promise((resolve) => {
            worker.addEventListener('statechange', () => {
              if (worker.state !== 'installing') resolve(worker.state);
            });
          });
        });
        console.log(`the update's worker: ${state}`);
        assert.equal(state, 'redundant', 'an incomplete build is not installed');
      } finally {
        app.server.overrides.clear();
      }
      assert.deepEqual(await appCaches(), before, 'the last whole build is kept');
      await app.context.setOffline(true);
      try {
        await page.reload();
        await waitUntilReady();
        const top1 = await classifyCoffee();
        assert.equal((await top1.textContent()).trim(), coffeeTop1.name);
      } finally {
        await app.context.setOffline(false);
      }
    });
  });

  it('runs under its Content-Security-Policy, where an injected inline script does not run', async () => {
    await step('csp', async () => {
      const policy = await page.evaluate(
        () => document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content ?? '',
      );
      assert.match(policy, /script-src 'self' 'wasm-unsafe-eval'/);
      // Everything above (classify, explain, offline) ran under it without a violation.
      const refused = app.consoleLines.filter((l) => /Content Security Policy|Refused to/i.test(l));
      assert.deepEqual(refused, []);
      const ran = await page.evaluate(async () => {
        const violation = new Promise((resolve) => {
          document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), { once: true });
          setTimeout(() => resolve(null), 2000);
        });
        const script = document.createElement('script');
        script.textContent = 'window.__injected = true;';
        document.body.append(script);
        return { injected: window.__injected === true, violated: await violation };
      });
      assert.equal(ran.injected, false, 'the inline script ran');
      assert.match(String(ran.violated), /script-src/);
    });
  });
});

describe('the device choice: the CPU backend where there is no usable GPU', { timeout: 20 * 60_000 }, () => {
  let server, browser, launched;
  before(async () => {
    launched = await serveAndLaunch();
    ({ server, browser } = launched);
  });
  after(async () => {
    await launched?.close();
  });

  /** A fresh page of the app in `browser`, with `init` run before the page's scripts. */
  async function open(query, init) {
    const context = await browser.newContext();
    const page = await context.newPage();
    if (init) await page.addInitScript(init);
    const requests = [];
    page.on('request', (req) => requests.push(req.url()));
    await page.goto(`http://127.0.0.1:${server.address().port}/${query}`);
    const status = page.locator('[data-testid="backend-status"][data-ready="true"]');
    await status.waitFor({ timeout: 60_000 });
    return { context, page, requests, status };
  }

  it('without WebGPU: runs on the CPU, says why, and classifies like PyTorch', async () => {
    // As in a browser without WebGPU (Safari before 26, Firefox on Linux): no `navigator.gpu`.
    const { context, page, requests, status } = await open('', () =>
      Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    const text = await status.textContent();
    console.log(`without WebGPU: ${text}`);
    assert.equal(await status.getAttribute('data-device'), 'cpu');
    assert.match(text, /no WebGPU/);
    assert.match(text, /Safari 26/);
    assert.match(text, /Firefox 141/);
    await page.locator('[data-testid="weights-status"][data-ready="true"]').waitFor({ timeout: READY_TIMEOUT });
    const started = Date.now();
    await page.setInputFiles('[data-testid="predict-input"]', coffeePath);
    const top1 = page.locator(`[data-testid="prediction-top1"][data-file="${path.basename(coffeePath)}"]`);
    await top1.waitFor({ timeout: PREDICT_TIMEOUT });
    const label = (await top1.textContent()).trim();
    const prob = Number(await top1.getAttribute('data-prob'));
    console.log(`CPU backend: ${label} p=${prob.toFixed(4)} in ${((Date.now() - started) / 1000).toFixed(1)} s (first photo, weights in memory)`);
    assert.equal(label, coffeeTop1.name);
    assert.ok(Math.abs(prob - coffeeTop1.prob) <= PROB_TOLERANCE, `${prob} vs ${coffeeTop1.prob}`);
    // A second photo: the time of one classification once everything is warm.
    const again = Date.now();
    await page.locator('[data-testid="predict-input"]').setInputFiles(coffeePath);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="prediction-top1"]').length === 2, null, { timeout: PREDICT_TIMEOUT });
    console.log(`CPU backend, warm: ${((Date.now() - again) / 1000).toFixed(2)} s per photo`);
    assert.deepEqual(requests.filter((url) => !isLocal(url)), []);
    if (process.env.SHOTS_DIR) {
      await page.setViewportSize({ width: 360, height: 640 });
      await page.screenshot({ path: path.join(process.env.SHOTS_DIR, 'cpu-360.png'), fullPage: true });
    }
    await context.close();
  });

  it('a software WebGPU adapter (SwiftShader) gives way to the CPU, and the address can ask for either', async () => {
    const auto = await open('');
    const text = await auto.status.textContent();
    console.log(`SwiftShader, no choice in the address: ${text}`);
    assert.equal(await auto.status.getAttribute('data-device'), 'cpu');
    assert.match(text, /software renderer/);
    assert.match(text, /swiftshader/i);
    // The other device is one click away.
    assert.match(await auto.page.locator('[data-testid="device-switch"]').getAttribute('href'), /device=webgpu/);
    await auto.context.close();

    const forced = await open('?device=webgpu');
    assert.equal(await forced.status.getAttribute('data-device'), 'webgpu');
    assert.match(await forced.status.textContent(), /as this page's address asks/);
    await forced.context.close();
  });

  /** Runs `?bench` (after `query`) on `page` and returns the figures, printed. */
  async function deviceCheck(page, what) {
    const started = Date.now();
    const result = page.locator('[data-testid="bench-result"]');
    await result.waitFor({ timeout: 5 * 60_000 });
    const seconds = (Date.now() - started) / 1000;
    const devices = JSON.parse(await result.getAttribute('data-json'));
    for (const d of devices) {
      console.log(`device check (${what}), ${d.device}${d.in_use ? ' (in use)' : ''} on ${d.name}: ${JSON.stringify(d.speed)}; ` +
        `limits ${JSON.stringify(d.limits)}; ` +
        `2 x 20 photos: ${d.estimates.map(([s, t]) => `${s} ${t.toFixed(0)} s`).join(', ')} (${d.seconds.toFixed(1)} s)`);
    }
    console.log(`device check (${what}) from page open: ${seconds.toFixed(1)} s`);
    for (const d of devices) {
      assert.equal(d.error, null, `${d.device}: ${d.error}`);
      for (const key of ['inference_ips', 'head_step_ips', 'last_block_step_ips', 'full_step_ips']) {
        assert.ok(d.speed[key] > 0 && Number.isFinite(d.speed[key]), `${d.device} ${key} = ${d.speed[key]}`);
      }
      assert.deepEqual(d.estimates.map(([s]) => s), ['head', 'last-block', 'gradual', 'full']);
      // The head (the frozen pass alone) is the shortest run and the whole network the
      // longest. Gradual spends a third of its epochs on the head, so it passes the last block
      // only where one timed full step costs over twice a last-block step: the figures of one
      // batch decide that (in one CI run 0.79 s against 0.39), not the engine.
      const [head, lastBlock, gradual, full] = d.estimates.map(([, t]) => t);
      assert.ok(head < lastBlock && head < gradual && head < full, `${[head, lastBlock, gradual, full]}`);
      assert.ok(lastBlock < full && gradual < full, `${[head, lastBlock, gradual, full]}`);
    }
    return devices;
  }

  it('?bench times both devices, writes the figures as JSON, and its finding picks the device next time', async () => {
    // SwiftShader chosen by address, so the check times WebGPU (in use) and the CPU.
    const { context, page } = await open('?device=webgpu&bench');
    const devices = await deviceCheck(page, 'SwiftShader in use');
    assert.deepEqual(devices.map((d) => d.device), ['webgpu', 'cpu']);
    assert.equal(devices[0].in_use, true);
    assert.match(devices[0].name, /swiftshader/i);
    // The adapter's limits: SwiftShader binds storage buffers of up to 1 GiB here.
    const limits = Object.fromEntries(devices[0].limits);
    assert.ok(limits.maxStorageBufferBindingSize >= 128 << 20, JSON.stringify(limits));
    assert.ok(limits.maxComputeInvocationsPerWorkgroup >= 256, JSON.stringify(limits));
    // The finding follows the figures (the default head run's estimate) and is kept.
    const head = Object.fromEntries(devices.map((d) => [d.device, Object.fromEntries(d.estimates).head]));
    const faster = head.webgpu <= head.cpu ? 'webgpu' : 'cpu';
    const finding = page.locator('[data-testid="bench-finding"]');
    assert.equal(await finding.getAttribute('data-faster'), faster);
    console.log(`device check finding: ${await finding.textContent()}`);
    // A new visit without ?device: the check, not the rule, decides, and says so.
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const status = page.locator('[data-testid="backend-status"][data-ready="true"]');
    await status.waitFor({ timeout: 60_000 });
    assert.equal(await status.getAttribute('data-device'), faster);
    assert.match(await status.textContent(), /device check on this computer found/);
    await context.close();
  });

  it('?bench on the CPU shares the frozen pass with helper workers', async () => {
    const { context, page } = await open('?device=cpu&bench');
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const [cpu] = await deviceCheck(page, 'CPU in use');
    assert.equal(cpu.device, 'cpu');
    const limits = Object.fromEntries(cpu.limits);
    assert.equal(limits.cores, cores);
    if (cores < 2) {
      // No helpers: the frozen pass timed by this worker alone.
      assert.equal(cpu.speed.shared.workers, 1);
    } else {
      // One worker per core, at most 4: the worker and its helpers, all timed on the same images.
      const shared = cpu.speed.shared;
      assert.equal(shared.workers, Math.min(cores, 4));
      assert.equal(limits.workers, shared.workers);
      assert.ok(shared.alone_ips > 0 && shared.shared_ips > 0, JSON.stringify(shared));
      console.log(`frozen pass of ${shared.images} images: ${shared.alone_ips.toFixed(2)} images/s alone, ` +
        `${shared.shared_ips.toFixed(2)} in ${shared.workers} workers (${(shared.shared_ips / shared.alone_ips).toFixed(2)}x)`);
    }
    await context.close();
  });

  it('?profile times each operation of a prediction and of a last-block step, with the step\'s phases', async () => {
    const { context, page } = await open('?device=cpu&profile');
    const result = page.locator('[data-testid="profile-result"]');
    await result.waitFor({ timeout: 5 * 60_000 });
    const passes = JSON.parse(await result.getAttribute('data-json'));
    assert.deepEqual(passes.map((p) => p.ops.pass), ['feature pass', 'last-block step']);
    const calls = (profile, op) => profile.rows.find((r) => r.op === op)?.calls;
    for (const p of passes) {
      const rows = p.ops.rows;
      console.log(`profile (CPU in the browser), ${p.ops.pass}: ${rows.slice(0, 5).map((r) => `${r.op} ${(r.share * 100).toFixed(0)}%`).join(', ')}; ` +
        `as run ${(p.ops.measured_seconds * 1e3).toFixed(0)} ms, ops ${(p.ops.ops_seconds * 1e3).toFixed(0)} ms`);
      assert.ok(Math.abs(rows.reduce((a, r) => a + r.share, 0) - 1) < 1e-6);
      assert.ok(rows.every((r) => r.seconds >= 0) && p.ops.measured_seconds > 0);
      // The browser's CPU backend launches no GPU kernels to count.
      assert.equal(p.kernels, null);
    }
    // Lite0's layout: 16 blocks, 15 with an expansion (each folded block with one runs as one
    // operation, engine/kernels/cpu/block.rs), 7 depthwise 3x3 and 9 depthwise 5x5.
    const [features, step] = passes;
    const sum = (profile, pick) => profile.rows.filter((r) => pick(r.op)).reduce((a, r) => a + r.calls, 0);
    const folded = (profile, k) => sum(profile, (op) => op.includes(`depthwise conv ${k}x${k} +`) && op.endsWith('(one pass)'));
    const blocks = (profile) => sum(profile, (op) => op.startsWith('block: conv 1x1 (expand) + '));
    assert.equal(blocks(features.ops), 15);
    assert.equal(folded(features.ops, 3), 7);
    assert.equal(folded(features.ops, 5), 9);
    assert.equal(features.phases, null);
    // The last block (3x3) trains, with the head's convolution; the 15 others are folded.
    assert.equal(calls(step.ops, 'depthwise conv 3x3, forward + backward'), 1);
    assert.equal(blocks(step.ops), 14);
    assert.equal(folded(step.ops, 3), 6);
    assert.equal(calls(step.ops, 'conv 1x1 (head), forward + backward'), 1);
    // Its four BatchNorms: the expansion's, the depthwise's and the head's with their ReLU6 as
    // one operation on the CPU backend (engine/kernels/cpu/batchnorm.rs), the projection's alone.
    assert.equal(calls(step.ops, 'batch norm (batch statistics) + relu6, forward + backward'), 3);
    assert.equal(calls(step.ops, 'batch norm (batch statistics), forward + backward'), 1);
    assert.deepEqual(step.phases.rows.map((r) => r.op).sort(), [
      'frozen part (folded, no autodiff)', 'optimiser update (AdamW)',
      'trainable part: backward', 'trainable part: forward and loss',
    ]);
    // Tables on the page: the operations of each pass and the step's phases.
    assert.equal(await page.locator('.profile-table').count(), 3);
    await context.close();
  });

  it('WebGPU without an adapter (Chromium without its WebGPU flags) runs on the CPU', async () => {
    const plain = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS.filter((a) => !/webgpu|vulkan/i.test(a)),
    });
    try {
      const context = await plain.newContext();
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      const status = page.locator('[data-testid="backend-status"][data-ready="true"]');
      await status.waitFor({ timeout: 60_000 });
      const text = await status.textContent();
      console.log(`Chromium without WebGPU flags: ${text}`);
      assert.equal(await status.getAttribute('data-device'), 'cpu');
      assert.match(text, /no GPU adapter|no WebGPU/);
    } finally {
      await plain.close();
    }
  });
});
