// The first feature pass of 40 photos in Chromium: 20 ants and 20 bees from the shared
// dataset, the head trained for one epoch without augmentation (the run is then almost all
// that pass). Prints the seconds from "Train" to the run's end. A measurement for notes:
// node scripts/feature_pass_browser.mjs [--device webgpu|cpu]
import { addAntsAndBees, openApp, trainHead } from '../tests/browser/helpers.mjs';

const device = process.argv.includes('--device') ? process.argv[process.argv.indexOf('--device') + 1] : 'webgpu';
const app = await openApp('feature-pass-', { device });
try {
  await app.page.goto(app.baseUrl);
  await addAntsAndBees(app.page, 20, 120_000);
  const started = Date.now();
  const status = await trainHead(app, 1, 20 * 60_000);
  const seconds = (Date.now() - started) / 1000;
  console.log(`Chromium ${device}: 40 photos, 1 head epoch: ${seconds.toFixed(1)} s, ${await status.getAttribute('data-state')}: ${await status.textContent()}`);
} finally {
  await app.close();
}
