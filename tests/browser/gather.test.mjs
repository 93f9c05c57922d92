// Gathering classes in the built app (dist/): a class-per-folder tree with `train/` and `val/`
// through the folder picker (classes from folder names, val images marked, a bad file listed
// and the rest added), removing one photo, deleting a class then undoing it, and a 12 MP photo
// that is decoded (by the worker) without a main-thread task over 50 ms.
//
// Run: `node --test tests/browser/` after `make dist`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { isLocal, openApp, sharedDir } from './helpers.mjs';

const hymenoptera = path.join(sharedDir, 'datasets/hymenoptera');
const READY_TIMEOUT = 5 * 60_000;
const LOAD_TIMEOUT = 3 * 60_000;

describe('gathering classes in headless Chromium', { timeout: 15 * 60_000 }, () => {
  let app;
  before(async () => {
    app = await openApp('finetune-gather-');
  });
  after(async () => {
    await app?.close();
  });

  it('builds classes from a train/val folder tree, removes a photo, undoes a delete', async () => {
    const { page, baseUrl, tmpDir, requests } = app;
    const card = (name) => `[data-testid="class-card"][data-class-name="${name}"]`;
    const count = async (name) => Number(await page.locator(`${card(name)} [data-testid="class-count"]`).textContent());
    const waitCount = (name, n) => page.locator(`${card(name)} [data-testid="class-count"]`)
      .filter({ hasText: new RegExp(`^${n}$`) })
      .waitFor({ timeout: LOAD_TIMEOUT });

    // pets/train/{ants,bees}: 3 photos each; pets/val/{ants,bees}: 1 each; one broken file.
    const root = path.join(tmpDir, 'pets');
    for (const [split, n] of [['train', 3], ['val', 1]]) {
      for (const cls of ['ants', 'bees']) {
        const dir = path.join(root, split, cls);
        await fsp.mkdir(dir, { recursive: true });
        const src = path.join(hymenoptera, split, cls);
        for (const f of fs.readdirSync(src).filter((f) => f.endsWith('.jpg')).sort().slice(0, n)) {
          await fsp.copyFile(path.join(src, f), path.join(dir, f));
        }
      }
    }
    await fsp.writeFile(path.join(root, 'train/bees/broken.jpg'), 'not a photo');

    await app.step('folder', async () => {
      await page.goto(baseUrl);
      await app.waitFor('[data-testid="weights-status"][data-ready="true"]', READY_TIMEOUT);
      await page.setInputFiles('[data-testid="folder-input"]', root);
      await waitCount('ants', 4);
      await waitCount('bees', 4);
      const names = await page.$$eval('[data-testid="class-card"]', (cards) => cards.map((c) => c.dataset.className));
      assert.deepEqual(names, ['ants', 'bees'], 'the empty default classes are replaced by the folders');
      assert.match(await page.locator(card('ants')).textContent(), /1 from val\//);
      const errors = await page.$$eval('[data-testid="file-error"]', (els) => els.map((e) => e.dataset.file));
      assert.equal(errors.length, 1);
      assert.match(errors[0], /broken\.jpg$/);
    });

    await app.step('remove one photo', async () => {
      await page.locator(`${card('ants')} .thumb-remove`).first().click();
      await waitCount('ants', 3);
    });

    await app.step('delete and undo', async () => {
      // At least two classes must stay: add a third first.
      await page.locator('[data-testid="add-class"]').click();
      assert.equal(await page.locator('[data-testid="class-card"]').count(), 3);
      await page.getByRole('button', { name: 'Delete class bees' }).click();
      assert.equal(await page.locator(card('bees')).count(), 0);
      await page.getByRole('button', { name: 'Undo' }).click();
      await waitCount('bees', 4);
      assert.equal(await count('ants'), 3);
    });

    await app.step('a 12 MP photo is added without blocking the page', async () => {
      // A 4000 x 3000 JPEG drawn in the page (gradients and shapes, like a photo's detail).
      const base64 = await page.evaluate(async () => {
        const canvas = new OffscreenCanvas(4000, 3000);
        const ctx = canvas.getContext('2d');
        const g = ctx.createLinearGradient(0, 0, 4000, 3000);
        g.addColorStop(0, '#2a6'); g.addColorStop(0.5, '#fc3'); g.addColorStop(1, '#36c');
        ctx.fillStyle = g;
        ctx.fillRect(0, 0, 4000, 3000);
        for (let i = 0; i < 400; i++) {
          ctx.fillStyle = `hsl(${(i * 37) % 360} 70% 50%)`;
          ctx.beginPath();
          ctx.arc((i * 997) % 4000, (i * 613) % 3000, 20 + (i % 90), 0, 2 * Math.PI);
          ctx.fill();
        }
        const blob = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.92 });
        const bytes = new Uint8Array(await blob.arrayBuffer());
        let text = '';
        for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(text);
      });
      const big = path.join(tmpDir, 'big-12mp.jpg');
      await fsp.writeFile(big, Buffer.from(base64, 'base64'));
      console.log(`12 MP photo: ${(fs.statSync(big).size / 1e6).toFixed(1)} MB`);
      await page.evaluate(() => {
        window.longTasks = [];
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) window.longTasks.push(`${e.startTime.toFixed(0)}: ${e.duration.toFixed(0)} ms`);
        }).observe({ type: 'longtask' });
      });
      const before = await count('ants');
      await page.setInputFiles(`${card('ants')} [data-testid="class-file-input"]`, big);
      await waitCount('ants', before + 1);
      // Let the thumbnail and the autosave that follow run too.
      await page.waitForTimeout(2000);
      const longTasks = await page.evaluate(() => window.longTasks);
      assert.deepEqual(longTasks, [], 'main-thread tasks over 50 ms while adding a 12 MP photo');
    });

    assert.deepEqual(requests.filter((url) => !isLocal(url)), []);
    assert.equal(app.crashed, null);
  });
});
