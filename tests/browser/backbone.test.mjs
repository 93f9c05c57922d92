// Choosing the pretrained model in the built app (dist/), in headless Chromium on the CPU
// backend: the picker compares Lite0/1/2; picking Lite1 downloads only Lite1's weights, the
// ImageNet panel then classifies the coffee photo as PyTorch's Lite1 does (not as Lite0), the
// layer diagram has Lite1's 21 blocks, photos added before the switch train with Lite1 and the
// exported model names Lite1; a reload remembers the choice and reads Lite1 from the cache; a
// backbone whose download fails says why and leaves the picker usable.
// Nothing may leave localhost.
//
// Run: `node --test tests/browser/backbone.test.mjs` after `make dist`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { addAntsAndBees, isLocal, openApp, sharedDir, trainHead } from './helpers.mjs';

const coffeePath = path.join(sharedDir, 'golden/coffee_orig.png');
const golden = (dir) => JSON.parse(fs.readFileSync(path.join(sharedDir, 'golden', dir, 'golden.json'), 'utf8'));
const lite0Coffee = golden('').images.coffee.top5[0];
const lite1Coffee = golden('lite1').images.coffee.top5[0];
const PROB_TOLERANCE = 0.02;
const PER_CLASS = 4;
const EPOCHS = 2;

const READY_TIMEOUT = 5 * 60_000;
const WORK_TIMEOUT = 5 * 60_000;

/** The JSON metadata in a safetensors file's header. */
function safetensorsMetadata(file) {
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  return JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')).__metadata__ ?? {};
}

describe('choosing the pretrained model (Chromium, CPU backend)', { timeout: 25 * 60_000 }, () => {
  let app, baseUrl, page, tmpDir, requests;

  before(async () => {
    app = await openApp('finetune-backbone-', { acceptDownloads: true, device: 'cpu' });
    ({ baseUrl, page, tmpDir, requests } = app);
  });

  after(async () => {
    await app?.close();
  });

  const step = (name, fn) => app.step(name, fn);
  const waitFor = (selector, timeout) => app.waitFor(selector, timeout);

  /** The ImageNet panel's top-1 for the coffee photo (the `n`th result shown). */
  async function classifyCoffee(n) {
    await page.setInputFiles('[data-testid="predict-input"]', coffeePath);
    await page.waitForFunction((k) => document.querySelectorAll('[data-testid="prediction-top1"]').length >= k, n, { timeout: WORK_TIMEOUT });
    const top1 = page.locator('[data-testid="prediction-top1"]').first();
    return { label: (await top1.textContent()).trim(), prob: Number(await top1.getAttribute('data-prob')) };
  }

  it('compares the backbones, switches to Lite1, predicts and trains with it, remembers it', async () => {
    await step('ready with Lite0', async () => {
      await page.goto(baseUrl);
      await waitFor('[data-testid="backbone-picker"][data-loaded="lite0"]', READY_TIMEOUT);
      const options = page.locator('[data-testid="backbone-option"]');
      assert.equal(await options.count(), 3);
      const facts = await options.allTextContents();
      console.log(facts.join('\n'));
      for (const [i, px] of ['224 px', '240 px', '260 px'].entries()) assert.match(facts[i], new RegExp(px));
      assert.match(facts[1], /21 blocks/);
      assert.ok(await page.locator('[data-backbone="lite0"] input').isChecked());
      const lite0 = await classifyCoffee(1);
      console.log(`Lite0: ${lite0.label} p=${lite0.prob.toFixed(4)} (PyTorch ${lite0Coffee.prob.toFixed(4)})`);
      assert.equal(lite0.label, lite0Coffee.name);
      assert.ok(Math.abs(lite0.prob - lite0Coffee.prob) <= PROB_TOLERANCE);
    });

    await step('photos before the switch', () => addAntsAndBees(page, PER_CLASS, WORK_TIMEOUT));

    await step('switch to Lite1', async () => {
      const before = requests.length;
      await page.locator('[data-backbone="lite1"] input').check();
      await waitFor('[data-testid="backbone-picker"][data-loaded="lite1"]', READY_TIMEOUT);
      const weights = (await page.locator('[data-testid="weights-status"]').textContent()).trim();
      console.log(`weights: ${weights}`);
      assert.match(weights, /EfficientNet-Lite1/);
      const fetched = requests.slice(before).filter((url) => url.includes('/weights/'));
      assert.deepEqual(fetched.map((u) => path.basename(new URL(u).pathname)), ['efficientnet-lite1.f16.safetensors']);
      assert.match(await page.locator('.lede').textContent(), /EfficientNet-Lite1/);
      const lite1 = await classifyCoffee(2);
      console.log(`Lite1: ${lite1.label} p=${lite1.prob.toFixed(4)} (PyTorch ${lite1Coffee.prob.toFixed(4)})`);
      assert.equal(lite1.label, lite1Coffee.name);
      assert.ok(Math.abs(lite1.prob - lite1Coffee.prob) <= PROB_TOLERANCE, `${lite1.prob} vs ${lite1Coffee.prob}`);
      // Every MBConv block of Lite1 in the diagram's stages (stem, conv head and new head aside).
      const pips = await page.locator('[data-testid="layer-stage"]').first().locator('.layer .pip').count();
      assert.equal(pips, 21 + 3);
    });

    await step('train with Lite1 and export', async () => {
      const status = await trainHead(app, EPOCHS, WORK_TIMEOUT);
      assert.equal(await status.getAttribute('data-state'), 'done', await status.textContent());
      assert.equal((await page.$$('[data-testid="epoch-row"]')).length, EPOCHS);
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: WORK_TIMEOUT }),
        page.locator('[data-testid="export-model"]').click(),
      ]);
      const saved = path.join(tmpDir, 'model.safetensors');
      await download.saveAs(saved);
      const meta = safetensorsMetadata(saved);
      assert.equal(meta.backbone, 'efficientnet-lite1');
      assert.equal(JSON.parse(meta.preprocessing).input_size, 240);
      assert.equal(JSON.parse(meta.training).backbone, 'lite1');
    });

    await step('reload remembers Lite1', async () => {
      const before = requests.length;
      await page.reload();
      await waitFor('[data-testid="backbone-picker"][data-loaded="lite1"]', READY_TIMEOUT);
      assert.match(await page.locator('[data-testid="weights-status"]').textContent(), /EfficientNet-Lite1.*from cache/);
      assert.deepEqual(requests.slice(before).filter((url) => url.includes('/weights/')), []);
      assert.deepEqual(requests.filter((url) => !isLocal(url)), []);
      assert.equal(app.crashed, null);
    });

    await step('a backbone whose weights cannot be downloaded leaves the choice open', async () => {
      await page.route('**/efficientnet-lite2.*', (route) => route.fulfill({ status: 404, body: 'not here' }));
      await page.locator('[data-backbone="lite2"] input').check();
      const status = page.locator('[data-testid="weights-status"]');
      await status.filter({ hasText: /HTTP 404/ }).waitFor({ timeout: READY_TIMEOUT });
      console.log(`lite2 missing: ${(await status.textContent()).trim()}`);
      // The picker is usable again: back to Lite0.
      const lite0 = page.locator('[data-backbone="lite0"] input');
      await page.waitForFunction(() => !document.querySelector('[data-backbone="lite0"] input').disabled, null, { timeout: 10_000 });
      await lite0.check();
      await waitFor('[data-testid="backbone-picker"][data-loaded="lite0"]', READY_TIMEOUT);
      await page.unroute('**/efficientnet-lite2.*');
    });
  });
});
