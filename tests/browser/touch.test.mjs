// The app on a phone and a tablet: headless Chromium with touch at 390 x 844 and 1024 x 768, on
// the CPU backend. No sideways scroll; the main controls are large enough to tap; classes are
// recorded from the (synthetic) webcam by holding the capture button with a finger, at 15
// frames a second or more; the head trains; a photo is classified with the trained model.
//
// Run: `node --test tests/browser/touch.test.mjs` after `make dist`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { firstFiles, hymenoptera, serveAndLaunch } from './helpers.mjs';

const READY_TIMEOUT = 5 * 60_000;
const WORK_TIMEOUT = 5 * 60_000;
const HOLD_MS = 2000;
/** Smallest height of a control a finger taps (Apple and Google ask for 44 and 48 px). */
const MIN_TAP = 40;
const teach = '[data-testid="teach-section"]';
const card = (name) => `${teach} [data-testid="class-card"][data-class-name="${name}"]`;

describe('phone and tablet sizes with touch (Chromium)', { timeout: 20 * 60_000 }, () => {
  let server, browser, launched;
  before(async () => {
    launched = await serveAndLaunch();
    ({ server, browser } = launched);
  });
  after(async () => {
    await launched?.close();
  });

  for (const [width, height] of [[390, 844], [1024, 768]]) {
    it(`gathers by touch, trains and predicts at ${width} x ${height}`, async () => {
      const context = await browser.newContext({ viewport: { width, height }, hasTouch: true, isMobile: width < 600 });
      const page = await context.newPage();
      const log = [];
      page.on('console', (m) => log.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
      try {
        await page.goto(`http://127.0.0.1:${server.address().port}/?device=cpu`);
        await page.locator('[data-testid="backend-status"][data-ready="true"]').waitFor({ timeout: READY_TIMEOUT });
        await page.locator('[data-testid="worker-status"][data-state="ready"]').waitFor({ timeout: READY_TIMEOUT });

        const sideways = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(sideways <= 0, `the page scrolls sideways by ${sideways} px`);

        const cards = page.locator(`${teach} [data-testid="class-card"]`);
        await cards.nth(0).locator('[data-testid="class-name-input"]').fill('ants');
        await cards.nth(1).locator('[data-testid="class-name-input"]').fill('bees');
        await page.locator('[data-testid="webcam-toggle"]').tap();
        await page.waitForFunction(() => {
          const v = document.querySelector('[data-testid="webcam-preview"]');
          return v && v.readyState >= 2 && v.videoWidth > 0;
        }, null, { timeout: 60_000 });

        const small = await page.evaluate((min) => {
          const controls = ['train-button', 'webcam-capture', 'webcam-toggle', 'add-class', 'save-project', 'strategy-select', 'epochs-input'];
          return controls
            .map((id) => [id, document.querySelector(`[data-testid="${id}"]`)?.getBoundingClientRect().height ?? 0])
            .filter(([, h]) => h < min);
        }, MIN_TAP);
        assert.deepEqual(small, [], `controls smaller than ${MIN_TAP} px: ${JSON.stringify(small)}`);

        // Hold the capture button with a finger for each class.
        const cdp = await context.newCDPSession(page);
        for (const name of ['ants', 'bees']) {
          await page.locator('[data-testid="webcam-class-select"]').selectOption({ label: name });
          const button = page.locator('[data-testid="webcam-capture"]');
          await button.scrollIntoViewIfNeeded();
          const box = await button.boundingBox();
          const point = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point] });
          await page.waitForTimeout(HOLD_MS);
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
          const count = page.locator('[data-testid="webcam-count"]');
          const frames = Number(await count.getAttribute('data-frames'));
          const fps = Number(await count.getAttribute('data-fps'));
          console.log(`${width} x ${height}: ${frames} frames of ${name} by a ${HOLD_MS / 1000} s touch (${fps} frames/s)`);
          assert.ok(fps >= 15, `${fps} frames a second`);
          await page.waitForFunction(
            ([sel, n]) => Number(document.querySelector(sel)?.textContent) >= n,
            [`${card(name)} [data-testid="class-count"]`, frames],
            { timeout: WORK_TIMEOUT },
          );
        }
        // A long press selected nothing and opened no menu.
        assert.equal(await page.evaluate(() => String(window.getSelection())), '');

        await page.locator('[data-testid="strategy-select"]').selectOption('head');
        await page.locator('[data-testid="epochs-input"]').fill('2');
        await page.locator('[data-testid="augment-toggle"]').setChecked(false);
        await page.locator('[data-testid="train-button"]').tap();
        await page.locator('[data-testid="train-status"][data-state="done"]').waitFor({ timeout: WORK_TIMEOUT });

        const bee = firstFiles(path.join(hymenoptera, 'val/bees'), 1)[0];
        await page.setInputFiles('[data-testid="trained-predict-input"]', bee);
        const top1 = page.locator(`[data-testid="trained-top1"][data-file="${path.basename(bee)}"]`);
        await top1.waitFor({ timeout: WORK_TIMEOUT });
        console.log(`${width} x ${height}: trained on webcam frames, a bee photo is "${(await top1.textContent()).trim()}"`);
        const after = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(after <= 0, `after training the page scrolls sideways by ${after} px`);
      } catch (err) {
        console.log(`--- ${width} x ${height} failed; page console:\n${log.join('\n') || '(empty)'}`);
        throw err;
      } finally {
        await context.close();
      }
    });
  }
});
