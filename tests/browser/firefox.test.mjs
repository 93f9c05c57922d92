// The built app (dist/) in Debian's Firefox ESR, a second browser engine, driven headless over
// WebDriver BiDi by puppeteer-core. With default settings Firefox on Linux has no WebGPU: the app
// runs on its CPU backend and must do everything there: classify the golden coffee photo like
// PyTorch, gather two classes (with a bad file), train the head, predict a held-out photo,
// export and import the model, and restore the project after a reload; its device check times
// the CPU with the helper workers. With the `dom.webgpu.enabled` preference Firefox 141 and
// newer (Debian 12 has 153 ESR in its security updates; `make test` installs it) offer a WebGPU
// adapter (lavapipe here), a second WebGPU implementation: the app classifies the coffee photo on
// it, and the device check times it against the CPU.
//
// Run: `node --test tests/browser/` after `make dist`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

import { isLocal, serveDist, sharedDir } from './helpers.mjs';

const FIREFOX_PATH = process.env.FIREFOX ?? '/usr/bin/firefox-esr';
const goldenDir = path.join(sharedDir, 'golden');
const coffeePath = path.join(goldenDir, 'coffee_orig.png');
const golden = JSON.parse(fs.readFileSync(path.join(goldenDir, 'golden.json'), 'utf8'));
const coffeeTop1 = golden.images.coffee.top5[0];
const hymenoptera = path.join(sharedDir, 'datasets/hymenoptera');
const PROB_TOLERANCE = 0.02;
const PER_CLASS = 6;
const READY_TIMEOUT = 5 * 60_000;
const WORK_TIMEOUT = 15 * 60_000;

function firstFiles(dir, n) {
  return fs.readdirSync(dir).filter((f) => /\.jpe?g$/i.test(f)).sort().slice(0, n).map((f) => path.join(dir, f));
}

/** Firefox with a fresh profile, the app served from dist/, and every request recorded. */
async function openFirefox(prefs = {}) {
  const server = await serveDist();
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX_PATH,
    headless: true,
    extraPrefsFirefox: prefs,
    // A wait may take READY_TIMEOUT on a busy machine: puppeteer's own limit (180 s) is not the
    // test's.
    protocolTimeout: 2 * READY_TIMEOUT,
  });
  const page = await browser.newPage();
  const requests = [];
  const log = [];
  page.on('request', (req) => requests.push(req.url()));
  page.on('console', (msg) => log.push(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => log.push(`[pageerror] ${err.message}`));
  // Replacing a model asks first (WebDriver BiDi would otherwise leave the dialog open).
  page.on('dialog', (dialog) => dialog.accept());
  const base = `http://127.0.0.1:${server.address().port}/`;
  return {
    page,
    requests,
    log,
    base,
    close: async () => {
      await browser.close();
      server.close();
    },
  };
}

/** Waits for `selector`; on failure prints the page's console. */
async function waitFor(ff, selector, timeout) {
  try {
    return await ff.page.waitForSelector(selector, { timeout });
  } catch (err) {
    console.log(`--- waiting for ${selector} failed; page console:\n${ff.log.join('\n') || '(empty)'}`);
    throw err;
  }
}

/** Waits for the device check's figures on `ff.page` and returns them, printed. */
async function deviceCheck(ff, what) {
  const result = await waitFor(ff, '[data-testid="bench-result"]', 5 * 60_000);
  const devices = JSON.parse(await result.evaluate((e) => e.dataset.json));
  for (const d of devices) {
    console.log(`device check (${what}), ${d.device}${d.in_use ? ' (in use)' : ''} on ${d.name}: ${JSON.stringify(d.speed)}; ` +
      `limits ${JSON.stringify(d.limits)}; 2 x 20 photos: ${d.estimates.map(([s, t]) => `${s} ${t.toFixed(0)} s`).join(', ')} (${d.seconds.toFixed(1)} s)`);
    assert.equal(d.error, null, `${d.device}: ${d.error}`);
    for (const key of ['inference_ips', 'head_step_ips', 'last_block_step_ips', 'full_step_ips']) {
      assert.ok(d.speed[key] > 0 && Number.isFinite(d.speed[key]), `${d.device} ${key} = ${d.speed[key]}`);
    }
  }
  return devices;
}

async function classifyCoffee(ff) {
  const input = await waitFor(ff, '[data-testid="predict-input"]:not([disabled])', READY_TIMEOUT);
  await input.uploadFile(coffeePath);
  const top1 = await waitFor(ff, `[data-testid="prediction-top1"][data-file="${path.basename(coffeePath)}"]`, WORK_TIMEOUT);
  return {
    label: (await top1.evaluate((e) => e.textContent)).trim(),
    prob: Number(await top1.evaluate((e) => e.dataset.prob)),
  };
}

describe('Firefox ESR with default settings (no WebGPU): the CPU backend', { timeout: 40 * 60_000 }, () => {
  let ff, tmpDir;
  before(async () => {
    ff = await openFirefox();
    tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'finetune-firefox-'));
  });
  after(async () => {
    await ff?.close();
    if (tmpDir) await fsp.rm(tmpDir, { recursive: true, force: true });
  });

  it('classifies, teaches, predicts, exports, imports and restores on the CPU', async () => {
    const { page } = ff;
    const teach = '[data-testid="teach-section"]';
    const card = (name) => `${teach} [data-testid="class-card"][data-class-name="${name}"]`;
    const count = (name) => page.$eval(`${card(name)} [data-testid="class-count"]`, (e) => Number(e.textContent));

    await page.goto(ff.base);
    const status = await waitFor(ff, '[data-testid="backend-status"][data-ready="true"]', 60_000);
    const text = await status.evaluate((e) => e.textContent);
    console.log(`Firefox: ${text}`);
    assert.equal(await status.evaluate((e) => e.dataset.device), 'cpu');
    assert.match(text, /no WebGPU/);
    await waitFor(ff, '[data-testid="weights-status"][data-ready="true"]', READY_TIMEOUT);

    const started = Date.now();
    const coffee = await classifyCoffee(ff);
    console.log(`Firefox CPU: ${coffee.label} p=${coffee.prob.toFixed(4)} in ${((Date.now() - started) / 1000).toFixed(1)} s; PyTorch p=${coffeeTop1.prob.toFixed(4)}`);
    assert.equal(coffee.label, coffeeTop1.name);
    assert.ok(Math.abs(coffee.prob - coffeeTop1.prob) <= PROB_TOLERANCE);

    // Two classes of 6 photos, one bad file.
    const names = await page.$$(`${teach} [data-testid="class-name-input"]`);
    for (const [input, name] of [[names[0], 'ants'], [names[1], 'bees']]) {
      await input.click({ count: 3 });
      await input.type(name);
    }
    await waitFor(ff, card('bees'), 10_000);
    const bad = path.join(tmpDir, 'not-an-ant.jpg');
    await fsp.writeFile(bad, 'This is a text file with a photo name.\n');
    await (await page.$(`${card('ants')} [data-testid="class-file-input"]`))
      .uploadFile(...firstFiles(path.join(hymenoptera, 'train/ants'), PER_CLASS), bad);
    await (await page.$(`${card('bees')} [data-testid="class-file-input"]`))
      .uploadFile(...firstFiles(path.join(hymenoptera, 'train/bees'), PER_CLASS));
    await waitFor(ff, `${teach} [data-testid="file-error"][data-file="not-an-ant.jpg"]`, WORK_TIMEOUT);
    await page.waitForFunction(
      (sel, n) => [...document.querySelectorAll(sel)].every((e) => Number(e.textContent) === n),
      { timeout: WORK_TIMEOUT },
      `${teach} [data-testid="class-count"]`,
      PER_CLASS,
    );

    // The head, 2 epochs, on the CPU.
    await page.select('[data-testid="strategy-select"]', 'head');
    const epochs = await page.$('[data-testid="epochs-input"]');
    await epochs.click({ count: 3 });
    await epochs.type('2');
    await page.$eval('[data-testid="augment-toggle"]', (e) => { if (e.checked) e.click(); });
    await waitFor(ff, '[data-testid="worker-status"][data-state="ready"]', READY_TIMEOUT);
    const trainStarted = Date.now();
    await (await page.$('[data-testid="train-button"]')).click();
    const done = await waitFor(ff, '[data-testid="train-status"][data-state="done"], [data-testid="train-status"][data-state="failed"]', WORK_TIMEOUT);
    assert.equal(await done.evaluate((e) => e.dataset.state), 'done', await done.evaluate((e) => e.textContent));
    console.log(`Firefox CPU: 2 epochs of head training on 12 photos in ${((Date.now() - trainStarted) / 1000).toFixed(1)} s`);

    const bee = firstFiles(path.join(hymenoptera, 'val/bees'), 1)[0];
    const predict = async () => {
      const before = await page.$$eval('[data-testid="trained-top1"]', (e) => e.length);
      await (await page.$('[data-testid="trained-predict-input"]')).uploadFile(bee);
      const top = await waitFor(ff, `[data-testid="trained-top1"][data-file="${path.basename(bee)}"]`, WORK_TIMEOUT);
      assert.ok(before <= 1);
      return { label: (await top.evaluate((e) => e.textContent)).trim(), prob: Number(await top.evaluate((e) => e.dataset.prob)) };
    };
    const trained = await predict();
    console.log(`Firefox CPU, trained model on ${path.basename(bee)}: ${trained.label} p=${trained.prob}`);
    assert.equal(trained.label, 'bees');

    // Export: catch the download's bytes in the page, then import them as a file.
    await page.evaluate(() => {
      const click = HTMLAnchorElement.prototype.click;
      HTMLAnchorElement.prototype.click = function () {
        if (this.download) {
          window.exported = fetch(this.href).then((r) => r.arrayBuffer()).then((b) => {
            let text = '';
            const bytes = new Uint8Array(b);
            for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
            return btoa(text);
          });
          return;
        }
        return click.call(this);
      };
    });
    await (await page.$('[data-testid="export-model"]')).click();
    const exported = Buffer.from(await page.evaluate(() => window.exported), 'base64');
    const modelFile = path.join(tmpDir, 'model.safetensors');
    await fsp.writeFile(modelFile, exported);
    console.log(`Firefox: exported model ${(exported.length / 1e6).toFixed(1)} MB`);
    await (await page.$('[data-testid="import-model"]')).uploadFile(modelFile);
    await page.waitForFunction(
      () => /Imported model\.safetensors: ants, bees/.test(document.querySelector('[data-testid="trained-model"]')?.textContent ?? ''),
      { timeout: WORK_TIMEOUT },
    );
    const imported = await predict();
    assert.equal(imported.label, 'bees');
    assert.ok(Math.abs(imported.prob - trained.prob) <= 1e-4, `${imported.prob} vs ${trained.prob}`);

    // Reload: the autosave brings the classes and the model back.
    await page.waitForFunction(
      () => document.querySelector('[data-testid="autosave-status"]')?.dataset.state === 'saved',
      { timeout: 60_000 },
    );
    await page.waitForNetworkIdle({ idleTime: 1500, timeout: 60_000 }).catch(() => {});
    await page.reload();
    await waitFor(ff, '[data-testid="autosave-status"][data-state="restored"]', WORK_TIMEOUT);
    await page.waitForFunction(
      (sel, n) => document.querySelectorAll(sel).length === 2 && [...document.querySelectorAll(sel)].every((e) => Number(e.textContent) === n),
      { timeout: WORK_TIMEOUT },
      `${teach} [data-testid="class-count"]`,
      PER_CLASS,
    );
    assert.equal(await count('ants'), PER_CLASS);
    await page.waitForFunction(
      () => /ants, bees/.test(document.querySelector('[data-testid="trained-model"]')?.textContent ?? ''),
      { timeout: WORK_TIMEOUT },
    );
    const restored = await predict();
    assert.equal(restored.label, 'bees');

    assert.deepEqual(ff.requests.filter((url) => !isLocal(url)), [], 'requests outside localhost');
  });

  it('times the CPU, alone and with its helper workers (?bench)', async () => {
    await ff.page.goto(`${ff.base}?bench`);
    const devices = await deviceCheck(ff, 'Firefox, no WebGPU');
    assert.deepEqual(devices.map((d) => d.device), ['cpu']);
    const cores = await ff.page.evaluate(() => navigator.hardwareConcurrency);
    if (cores < 2) {
      assert.equal(devices[0].speed.shared.workers, 1);
    } else {
      const shared = devices[0].speed.shared;
      assert.equal(shared.workers, Math.min(cores, 4));
      console.log(`Firefox frozen pass of ${shared.images} images: ${shared.alone_ips.toFixed(2)} images/s alone, ` +
        `${shared.shared_ips.toFixed(2)} in ${shared.workers} workers`);
    }
  });
});

describe('Firefox ESR with WebGPU turned on (lavapipe)', { timeout: 15 * 60_000 }, () => {
  let ff;
  before(async () => {
    // The app's network runs in a worker: WebGPU there needs its own preference.
    ff = await openFirefox({
      'dom.webgpu.enabled': true,
      'dom.webgpu.workers.enabled': true,
      'gfx.webgpu.ignore-blocklist': true,
    });
  });
  after(async () => {
    await ff?.close();
  });

  it('classifies the coffee photo on WebGPU, and times it against the CPU', async () => {
    await ff.page.goto(`${ff.base}?device=webgpu`);
    const status = await waitFor(ff, '[data-testid="backend-status"][data-ready="true"]', 60_000);
    const text = await status.evaluate((e) => e.textContent);
    console.log(`Firefox with WebGPU (${await ff.page.evaluate(() => navigator.userAgent)}): ${text}`);
    await waitFor(ff, '[data-testid="weights-status"][data-ready="true"]', READY_TIMEOUT);
    // The device in use after start-up (a WebGPU device that fails to start gives way to the CPU).
    assert.equal(await status.evaluate((e) => e.dataset.device), 'webgpu');
    const coffee = await classifyCoffee(ff);
    console.log(`Firefox WebGPU: ${coffee.label} p=${coffee.prob.toFixed(4)}`);
    assert.equal(coffee.label, coffeeTop1.name);
    assert.ok(Math.abs(coffee.prob - coffeeTop1.prob) <= PROB_TOLERANCE);

    await ff.page.goto(`${ff.base}?device=webgpu&bench`);
    const devices = await deviceCheck(ff, 'Firefox, WebGPU in use');
    assert.deepEqual(devices.map((d) => d.device), ['webgpu', 'cpu']);
    assert.ok(Object.fromEntries(devices[0].limits).maxStorageBufferBindingSize > 0, JSON.stringify(devices[0].limits));
  });
});
