// Where the time goes in Chromium: opens the built app (dist/) with WebGPU on SwiftShader (or
// `--device cpu`), runs "Profile this device" (with the full step if `--full`), and prints each
// pass's slowest operations. A measurement for notes, not a test: node scripts/profile_browser.mjs
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, serveDist } from '/work/main/tests/browser/helpers.mjs';

const device = process.argv.includes('--device') ? process.argv[process.argv.indexOf('--device') + 1] : 'webgpu';
const server = await serveDist();
const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: [...CHROMIUM_ARGS, ...(process.env.EXTRA ? process.env.EXTRA.split(" ") : [])] });
try {
  const page = await browser.newPage();
  const started = Date.now();
  const full = process.argv.includes('--full') ? 'full' : '';
  await page.goto(`http://127.0.0.1:${server.address().port}/?device=${device}&profile=${full}`);
  const result = page.locator('[data-testid="profile-result"]');
  await result.waitFor({ timeout: 30 * 60_000 });
  console.log(`# Chromium, ${device} (${((Date.now() - started) / 1000).toFixed(0)} s from page open)\n`);
  const table = (p, n = 10) => [
    `${p.pass} (batch ${p.batch}): operations ${(p.ops_seconds * 1e3).toFixed(1)} ms, pass as run ${(p.measured_seconds * 1e3).toFixed(1)} ms`,
    '| operation | calls | ms | share |', '|---|---|---|---|',
    ...p.rows.slice(0, n).map((r) => `| ${r.op} | ${r.calls} | ${(r.seconds * 1e3).toFixed(1)} | ${(r.share * 100).toFixed(1)}% |`),
    '',
  ].join('\n');
  for (const p of JSON.parse(await result.getAttribute('data-json'))) {
    if (p.phases) console.log(`Phases of one step:\n${table(p.phases)}`);
    console.log(table(p.ops));
    if (p.kernels) console.log(`GPU kernels (counted; a browser cannot time them one by one): ${p.kernels.rows.reduce((a, r) => a + r.calls, 0)}\n${table(p.kernels)}`);
  }
} finally {
  await browser.close();
  server.close();
}
