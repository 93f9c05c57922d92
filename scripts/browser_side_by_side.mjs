// The browser's CPU path against its peer, in one run: the app's own device check (`?bench=B`,
// burn's CPU backend in wasm, `?device=cpu`) on one worker (`&helpers=0`) and with the helper
// workers it starts on this machine, and ONNX Runtime Web's wasm backend on one thread
// (bench/ort.html) on the same Lite0, in the same headless Chromium (without its WebGPU flags),
// served from one localhost origin as a static host serves it (no cross-origin isolation).
// Rounds alternate between the three; medians over the rounds; ratios printed.
//
// What each figure times (images a second at batch B):
//   inference  the whole network to the logits (ours: the device check's inference pass, with
//              BatchNorm folded; ORT: lite0-logits.onnx)
//   head pass  the network up to the pooled 1280 features, what a head run computes once over
//              its photos (ours: the check's frozen pass over 2 batches per worker, pixels to
//              tensor included; ORT: lite0-features.onnx)
//
// scripts/browser-side-by-side.sh builds what this needs and runs it:
//   node scripts/browser_side_by_side.mjs --onnx DIR [--rounds 3] [--batch 16] [--runs 5] [--json FILE]
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, distDir, isLocal, repoRoot, serveDist } from '../tests/browser/helpers.mjs';

const { values: opts } = parseArgs({
  options: {
    onnx: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    batch: { type: 'string', default: '16' },
    runs: { type: 'string', default: '5' },
    json: { type: 'string' },
  },
});
const rounds = Number(opts.rounds);
const batch = Number(opts.batch);
if (!opts.onnx || !fs.existsSync(path.join(opts.onnx, 'lite0-logits.onnx'))) {
  throw new Error('--onnx DIR: the folder scripts/export_onnx.py wrote');
}
if (!fs.existsSync(path.join(distDir, 'index.html'))) throw new Error('dist/ is missing: run `make dist` first');
const ortDist = path.join(repoRoot, 'node_modules/onnxruntime-web/dist');
const ortVersion = JSON.parse(fs.readFileSync(path.join(ortDist, '../package.json'), 'utf8')).version;
// Without the WebGPU (and SwiftShader) flags the page finds no GPU adapter: only the CPU backend exists.
const ARGS = CHROMIUM_ARGS.filter((a) => !/webgpu|vulkan|angle|media-stream/i.test(a));
const TIMEOUT = 15 * 60_000;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Opens `url` in a fresh context, waits for `selector`, and returns its `data-json`, parsed. */
async function figures(browser, url, selector) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const requests = [];
  let crashed = null;
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => (crashed = e));
  try {
    await page.goto(url);
    const found = page.locator(selector);
    const deadline = Date.now() + TIMEOUT;
    while (!(await found.count())) {
      if (crashed) throw new Error(`${url}: ${crashed.stack ?? crashed}`);
      if (Date.now() > deadline) throw new Error(`${url}: no ${selector} after ${TIMEOUT / 1000} s`);
      await page.waitForTimeout(250);
    }
    const outside = requests.filter((u) => !isLocal(u));
    if (outside.length) throw new Error(`${url} asked outside localhost: ${outside.join(', ')}`);
    return {
      json: JSON.parse(await found.getAttribute('data-json')),
      cores: await page.evaluate(() => navigator.hardwareConcurrency),
    };
  } finally {
    await context.close();
  }
}

/** The app's device check on the CPU at `batch`, with `query` added to the address. */
async function ours(browser, base, query) {
  const { json, cores } = await figures(browser, `${base}/?device=cpu&bench=${batch}${query}`, '[data-testid="bench-result"]');
  const cpu = json.find((d) => d.in_use);
  if (cpu?.device !== 'cpu' || cpu.error || !cpu.speed) throw new Error(`the device check: ${JSON.stringify(json)}`);
  const { speed } = cpu;
  const workers = Object.fromEntries(cpu.limits).workers;
  if (speed.batch !== batch) throw new Error(`the device check ran at batch ${speed.batch}, not ${batch}`);
  if (speed.shared?.workers !== workers || speed.shared.images !== 2 * batch * workers) {
    throw new Error(`the frozen pass: ${JSON.stringify(speed.shared)} with ${workers} workers`);
  }
  return {
    cores,
    workers,
    batch: speed.batch,
    inference_ips: speed.inference_ips,
    head_pass_alone_ips: speed.shared.alone_ips,
    head_pass_ips: speed.shared.shared_ips,
  };
}

async function ort(browser, base) {
  const { json } = await figures(browser, `${base}/bench/ort.html?batch=${batch}&runs=${opts.runs}`, '[data-testid="ort-result"][data-json]');
  if (json.error) throw new Error(`the ONNX Runtime Web page: ${json.error}`);
  if (json.batch !== batch || json.num_threads !== 1 || json.cross_origin_isolated) {
    throw new Error(`the ONNX Runtime Web page ran otherwise than asked: ${JSON.stringify(json)}`);
  }
  return json;
}

const server = await serveDist({
  mounts: { '/bench/': path.join(repoRoot, 'bench'), '/ort/': ortDist, '/models/': path.resolve(opts.onnx) },
});
const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ARGS });
const chromiumVersion = browser.version();
const base = `http://127.0.0.1:${server.address().port}`;
const taken = [];
try {
  for (let r = 0; r < rounds; r++) {
    const round = {
      one_worker: await ours(browser, base, '&helpers=0'),
      helpers: await ours(browser, base, ''),
      ort: await ort(browser, base),
    };
    const { inference_ms, head_pass_ms, user_agent, ...brief } = round.ort;
    console.log(`round ${r + 1}: ${JSON.stringify({ ...round, ort: brief })}`);
    taken.push(round);
  }
} finally {
  await browser.close();
  server.close();
}

const med = (who, key) => median(taken.map((r) => r[who][key]));
const m = {
  ours_one_worker: { inference_ips: med('one_worker', 'inference_ips'), head_pass_ips: med('one_worker', 'head_pass_ips') },
  ours_helpers: {
    workers: taken[0].helpers.workers,
    inference_ips: med('helpers', 'inference_ips'),
    head_pass_alone_ips: med('helpers', 'head_pass_alone_ips'),
    head_pass_ips: med('helpers', 'head_pass_ips'),
  },
  onnxruntime_web: { inference_ips: med('ort', 'inference_ips'), head_pass_ips: med('ort', 'head_pass_ips') },
};
const ratios = {
  inference_one_worker: m.ours_one_worker.inference_ips / m.onnxruntime_web.inference_ips,
  head_pass_one_worker: m.ours_one_worker.head_pass_ips / m.onnxruntime_web.head_pass_ips,
  head_pass_helpers: m.ours_helpers.head_pass_ips / m.onnxruntime_web.head_pass_ips,
};
const cores = taken[0].helpers.cores;
const workers = m.ours_helpers.workers;
const result = {
  cores,
  chromium: chromiumVersion,
  onnxruntime_web: ortVersion,
  cross_origin_isolated: taken[0].ort.cross_origin_isolated,
  batch,
  rounds,
  ort_runs: Number(opts.runs),
  medians: m,
  ratios,
  goals: { one_worker: '>= 1.0x', helpers: '>= 1.5x' },
  taken,
};

const row = (name, a, b) => `${name.padEnd(36)}${a.toFixed(1).padStart(8)}${b.toFixed(1).padStart(9)}${(a / b).toFixed(2).padStart(7)}x`;
console.log(`\n${cores} cores (navigator.hardwareConcurrency), headless Chromium ${chromiumVersion} without WebGPU, ` +
  `onnxruntime-web ${ortVersion} (wasm, 1 thread, crossOriginIsolated ${result.cross_origin_isolated}); ` +
  `Lite0, batch ${batch}, medians of ${rounds} alternating rounds (images/s)`);
console.log(`${''.padEnd(36)}${'ours'.padStart(8)}${'ORT Web'.padStart(9)}${'ratio'.padStart(8)}`);
console.log(row('inference, one worker', m.ours_one_worker.inference_ips, m.onnxruntime_web.inference_ips));
console.log(row('head pass, one worker', m.ours_one_worker.head_pass_ips, m.onnxruntime_web.head_pass_ips));
const helpers = `${workers - 1} helper${workers === 2 ? '' : 's'}`;
console.log(row(`head pass, ${workers} workers (${helpers})`, m.ours_helpers.head_pass_ips, m.onnxruntime_web.head_pass_ips));
console.log(`(the helpers' run: inference ${m.ours_helpers.inference_ips.toFixed(1)}, its worker's head pass alone ` +
  `${m.ours_helpers.head_pass_alone_ips.toFixed(1)}; goals: one worker >= 1.0x, with helpers >= 1.5x)`);
if (opts.json) fs.writeFileSync(opts.json, `${JSON.stringify(result, null, 1)}\n`);
