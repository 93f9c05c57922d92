// The README's picture: the built app (dist/) in headless Chromium on its CPU backend, after
// classifying the golden coffee photo and gathering two classes. Run after `make dist`:
// `node scripts/screenshot.mjs docs/screenshot.png`.
import path from 'node:path';
import { addAntsAndBees, openApp, sharedDir } from '../tests/browser/helpers.mjs';

const out = process.argv[2] ?? 'docs/screenshot.png';
const app = await openApp('finetune-shot-', { device: 'cpu' });
try {
  const { page } = app;
  await page.goto(app.baseUrl);
  await app.waitFor('[data-testid="weights-status"][data-ready="true"]', 120_000);
  await page.setInputFiles('[data-testid="predict-input"]', path.join(sharedDir, 'golden/coffee_orig.png'));
  await app.waitFor('[data-testid="prediction-top1"]', 120_000);
  await addAntsAndBees(page, 6, 120_000);
  await page.setViewportSize({ width: 1280, height: 1400 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(1000);
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await app.close();
}
