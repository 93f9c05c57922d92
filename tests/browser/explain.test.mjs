// "Where did it look?" in the built app (dist/), in headless Chromium on the CPU backend: a
// photo whose only espresso sits in the bottom-right quadrant (made in the page from the golden
// coffee photo) gets a Grad-CAM heatmap, computed in the worker, with its heat in that quadrant;
// a model trained here explains its own prediction; no main-thread task over 50 ms meanwhile;
// the run's photos appear in the feature map, and the photo under the pointer shows; a photo
// seen by each layer (stem to last block) at its size, and which of them the strategy trains.
// Nothing may leave localhost.
//
// Run: `node --test tests/browser/explain.test.mjs` after `make dist`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { addAntsAndBees, firstFiles, hymenoptera, isLocal, openApp, sharedDir, trainHead } from './helpers.mjs';

const coffee224 = path.join(sharedDir, 'golden/coffee_224.png');
const PER_CLASS = 4;
const READY_TIMEOUT = 5 * 60_000;
const WORK_TIMEOUT = 5 * 60_000;

describe('where the model looks (Chromium, CPU backend)', { timeout: 20 * 60_000 }, () => {
  let app, baseUrl, page, tmpDir, requests;

  before(async () => {
    app = await openApp('finetune-explain-', { device: 'cpu' });
    ({ baseUrl, page, tmpDir, requests } = app);
  });

  after(async () => {
    await app?.close();
  });

  const step = (name, fn) => app.step(name, fn);
  const waitFor = (selector, timeout) => app.waitFor(selector, timeout);
  const teach = '[data-testid="teach-section"]';

  /** Starts recording main-thread tasks over 50 ms. */
  const watchLongTasks = () =>
    page.evaluate(() => {
      window.longTasks = [];
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.longTasks.push(`${e.startTime.toFixed(0)}: ${e.duration.toFixed(0)} ms`);
      }).observe({ type: 'longtask' });
    });

  it('puts the heat where the espresso is, and explains a trained model', async () => {
    await step('ready', async () => {
      await page.goto(baseUrl);
      await waitFor('[data-testid="weights-status"][data-ready="true"]', READY_TIMEOUT);
    });

    const corner = path.join(tmpDir, 'espresso-bottom-right.png');
    await step('a photo with the espresso in one corner', async () => {
      // Grey 224 x 224 with the golden coffee photo shrunk to 112 x 112 in the bottom right.
      const dataUrl = `data:image/png;base64,${fs.readFileSync(coffee224).toString('base64')}`;
      const png = await page.evaluate(async (src) => {
        const img = new Image();
        img.src = src;
        await img.decode();
        const canvas = document.createElement('canvas');
        canvas.width = canvas.height = 224;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = 'rgb(127,127,127)';
        ctx.fillRect(0, 0, 224, 224);
        ctx.drawImage(img, 112, 112, 112, 112);
        return canvas.toDataURL('image/png').split(',')[1];
      }, dataUrl);
      await fsp.writeFile(corner, Buffer.from(png, 'base64'));
    });

    await step('explain an ImageNet prediction', async () => {
      await page.setInputFiles('[data-testid="predict-input"]', corner);
      const top1 = await waitFor(`[data-testid="prediction-top1"][data-file="${path.basename(corner)}"]`, WORK_TIMEOUT);
      const label = (await top1.textContent()).trim();
      console.log(`corner photo: ${label} p=${Number(await top1.getAttribute('data-prob')).toFixed(4)}`);
      assert.equal(label, 'espresso');
      await watchLongTasks();
      await page.locator('.result [data-testid="explain-button"]').first().click();
      const fig = await waitFor('.result [data-testid="gradcam"]', WORK_TIMEOUT);
      const quadrants = JSON.parse(await fig.getAttribute('data-quadrants'));
      console.log(`heat by quadrant (TL, TR, BL, BR): ${quadrants.map((q) => q.toFixed(2)).join(', ')}; grid ${await fig.getAttribute('data-grid')}`);
      assert.equal(await fig.getAttribute('data-label'), 'espresso');
      assert.equal(await fig.getAttribute('data-grid'), '7x7');
      assert.ok(Number(await fig.getAttribute('data-peak')) > 0);
      assert.ok(quadrants[3] > 0.5, `bottom-right share ${quadrants[3]}`);
      assert.ok(quadrants[3] === Math.max(...quadrants));
      // The heatmap is a real picture of the network's input size.
      const size = await (await fig.$('img')).evaluate(async (img) => {
        await img.decode();
        return [img.naturalWidth, img.naturalHeight];
      });
      assert.deepEqual(size, [224, 224]);
      assert.deepEqual(await page.evaluate(() => window.longTasks), [], 'main-thread tasks over 50 ms');
    });

    await step('what each layer sees', async () => {
      await page.setInputFiles('[data-testid="layers-input"]', path.join(sharedDir, 'golden/coffee_orig.png'));
      await waitFor('[data-testid="layer-view"]', WORK_TIMEOUT);
      const views = await page.locator('[data-testid="layer-view"]').evaluateAll((els) =>
        els.map((e) => [e.dataset.depth, e.dataset.size, Number(e.dataset.channels), e.dataset.trains]));
      console.log(`layer views: ${JSON.stringify(views)}`);
      assert.deepEqual(views, [
        ['Stem', '112×112', 32, 'false'],
        ['Early block', '56×56', 24, 'false'],
        ['Middle block', '14×14', 80, 'false'],
        ['Last block', '7×7', 320, 'false'],
      ]);
      const widths = await page.locator('[data-testid="layer-view"] img').evaluateAll((imgs) =>
        Promise.all(imgs.map((img) => img.decode().then(() => img.naturalWidth))));
      assert.deepEqual(widths, [230, 230, 230, 230]);
      // The strategy decides which of them learn.
      await page.locator('[data-testid="strategy-select"]').selectOption('last-block');
      await page.locator('[data-testid="layer-view"][data-depth="Last block"][data-trains="true"]').waitFor({ timeout: 10_000 });
      assert.equal(await page.locator('[data-testid="layer-view"][data-trains="true"]').count(), 1);
    });

    await step('explain a trained model', async () => {
      await addAntsAndBees(page, PER_CLASS, WORK_TIMEOUT);
      const status = await trainHead(app, 2, WORK_TIMEOUT);
      assert.equal(await status.getAttribute('data-state'), 'done', await status.textContent());
      // The feature map: every photo of the run, one panel (only the head learned), and the
      // photo under the pointer.
      await page.locator('[data-testid="feature-map-button"]').click();
      const map = await waitFor('[data-testid="feature-map"]', WORK_TIMEOUT);
      assert.equal(await map.getAttribute('data-points'), String(2 * PER_CLASS));
      assert.equal(await page.locator('[data-testid="feature-point"]').count(), 2 * PER_CLASS);
      assert.equal(await page.locator('[data-testid="feature-panel"]').count(), 1);
      assert.equal(await page.locator('[data-testid="feature-point"][data-val="true"]').count() > 0, true);
      const classesShown = new Set(await page.locator('[data-testid="feature-point"]').evaluateAll((els) => els.map((e) => e.dataset.class)));
      assert.deepEqual([...classesShown].sort(), ['0', '1']);
      await page.locator('[data-testid="feature-point"]').first().hover();
      const shown = await waitFor('[data-testid="feature-photo"] img', 10_000);
      assert.ok(await shown.evaluate((img) => img.decode().then(() => img.naturalWidth > 0)));
      const bee = firstFiles(path.join(hymenoptera, 'val/bees'), 1)[0];
      await page.setInputFiles(`${teach} [data-testid="trained-predict-input"]`, bee);
      const top1 = await waitFor(`${teach} [data-testid="trained-top1"][data-file="${path.basename(bee)}"]`, WORK_TIMEOUT);
      const said = (await top1.textContent()).trim();
      await page.locator(`${teach} [data-testid="explain-button"]`).last().click();
      const fig = await waitFor(`${teach} [data-testid="gradcam"]`, WORK_TIMEOUT);
      const quadrants = JSON.parse(await fig.getAttribute('data-quadrants'));
      console.log(`trained model on ${path.basename(bee)}: ${said}; heat by quadrant ${quadrants.map((q) => q.toFixed(2)).join(', ')}`);
      assert.equal(await fig.getAttribute('data-label'), said, 'it explains the class it predicted');
      assert.equal(await fig.getAttribute('data-grid'), '7x7');
      assert.ok(Math.abs(quadrants.reduce((a, b) => a + b, 0) - 1) < 1e-3);
      assert.deepEqual(requests.filter((url) => !isLocal(url)), []);
      assert.equal(app.crashed, null);
    });
  });
});
