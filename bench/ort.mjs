// Times the app's Lite0 (exported by scripts/export_onnx.py) in ONNX Runtime Web's wasm backend
// on one thread, as a static host serves it (no cross-origin isolation): inference (the logits)
// and the head pass (up to the pooled 1280 features: what head training computes once), at
// `?batch=` (16), one untimed warm-up then `?runs=` (5) timed runs each, medians. The figures
// go, as JSON, into `data-json` of #result. Served by scripts/browser_side_by_side.mjs with
// onnxruntime-web's dist/ at ../ort/ and the ONNX files at ../models/.
import * as ort from '../ort/ort.wasm.min.mjs';

const params = new URLSearchParams(location.search);
const batch = Number(params.get('batch') ?? 16);
const runs = Number(params.get('runs') ?? 5);
const status = document.getElementById('status');
const result = document.getElementById('result');

/** `batch` fixed pictures, already normalised (speed does not depend on the values). */
function input() {
  const data = new Float32Array(batch * 3 * 224 * 224);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 251) / 64 - 2;
  return new ort.Tensor('float32', data, [batch, 3, 224, 224]);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Milliseconds of each timed run of `file` on `x`, after one untimed warm-up, and the output's shape. */
async function time(file, x) {
  const session = await ort.InferenceSession.create(new URL(`../models/${file}`, import.meta.url).href, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  const feeds = { [session.inputNames[0]]: x };
  const out = await session.run(feeds);
  const shape = out[session.outputNames[0]].dims;
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(feeds);
    ms.push(performance.now() - t);
  }
  await session.release();
  return { ms, shape };
}

async function main() {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = new URL('../ort/', import.meta.url).href;
  const x = input();
  status.textContent = `Timing inference at batch ${batch}…`;
  const inference = await time('lite0-logits.onnx', x);
  status.textContent = `Timing the head pass at batch ${batch}…`;
  const head = await time('lite0-features.onnx', x);
  const ips = (ms) => (batch * 1000) / median(ms);
  return {
    engine: 'onnxruntime-web',
    version: ort.env.versions?.web ?? null,
    backend: 'wasm',
    num_threads: ort.env.wasm.numThreads,
    cross_origin_isolated: globalThis.crossOriginIsolated === true,
    cores: navigator.hardwareConcurrency,
    user_agent: navigator.userAgent,
    batch,
    runs,
    inference_ips: ips(inference.ms),
    head_pass_ips: ips(head.ms),
    inference_ms: inference.ms,
    head_pass_ms: head.ms,
    logits_shape: inference.shape,
    features_shape: head.shape,
  };
}

main().then(
  (figures) => {
    result.dataset.json = JSON.stringify(figures);
    result.textContent = JSON.stringify(figures, null, 1);
    status.textContent = 'Done.';
  },
  (err) => {
    result.dataset.json = JSON.stringify({ error: String(err?.stack ?? err) });
    status.textContent = `Failed: ${err}`;
  },
);
