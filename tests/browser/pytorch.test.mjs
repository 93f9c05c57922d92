// "This run in PyTorch" in the built app (dist/), headless Chromium: the panel's code follows
// the settings (strategy, rate multiplier, schedule, augmentation), pointing at a setting
// lights the lines it writes, the downloaded train.py is byte for byte what
// `finetune pytorch` writes for the same settings, and split.json names the photos the run
// would hold out. Nothing may leave localhost.
//
// Run: `node --test tests/browser/pytorch.test.mjs` after `make dist` and a native build
// (`cargo test` builds the `finetune` it compares with).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { addAntsAndBees, isLocal, openApp, repoRoot } from './helpers.mjs';

const READY_TIMEOUT = 5 * 60_000;
const PER_CLASS = 6;

const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache/finetune-studio/target');
const finetuneBin = process.env.FINETUNE_BIN ?? path.join(targetDir, 'debug/finetune');

describe('this run in PyTorch (Chromium)', { timeout: 15 * 60_000 }, () => {
  let app, page, tmpDir, requests;

  before(async () => {
    assert.ok(fs.existsSync(finetuneBin), `${finetuneBin} is missing: build it with cargo test (make test does)`);
    app = await openApp('finetune-pytorch-', { acceptDownloads: true, device: 'cpu' });
    ({ page, tmpDir, requests } = app);
  });

  after(async () => {
    await app?.close();
  });

  const step = (name, fn) => app.step(name, fn);
  const code = () => page.locator('[data-testid="pytorch-code"]').textContent();
  const litText = async () => (await page.locator('[data-testid="pytorch-code"] .part.lit').allTextContents()).join('');

  it('follows the settings, lights their lines and downloads what the CLI writes', async () => {
    await step('open the panel', async () => {
      await page.goto(app.baseUrl);
      await app.waitFor('[data-testid="pytorch-panel"]', READY_TIMEOUT);
      await page.locator('[data-testid="pytorch-panel"] summary').click();
      await page.locator('[data-testid="strategy-select"]').selectOption('head');
      const text = await code();
      assert.match(text, /Strategy "head"/);
      assert.match(text, / {4}\(10, 0\), {2}# the head alone/);
      assert.match(text, /OneCycleLR/);
      assert.doesNotMatch(text, /RandomResizedCrop/);
    });

    await step('the code changes with the settings', async () => {
      await page.locator('[data-testid="strategy-select"]').selectOption('last-block');
      await page.locator('[data-testid="advanced-settings"] summary').click();
      await page.locator('[data-testid="lr-mult-input"]').fill('0.5');
      await page.locator('[data-testid="schedule-select"]').selectOption('cosine');
      await page.locator('[data-testid="augment-toggle"]').setChecked(true);
      for (const id of ['aug-rotate', 'aug-translate', 'aug-color']) {
        await page.locator(`[data-testid="${id}"]`).setChecked(false);
      }
      const text = await code();
      assert.match(text, /Strategy "last-block"/);
      assert.match(text, / {4}\(10, 1\), {2}# the last block/);
      assert.match(text, /LR_MULT = 0\.5\n/);
      assert.match(text, /CosineAnnealingLR/);
      assert.doesNotMatch(text, /OneCycleLR/);
      assert.match(text, /T\.RandomResizedCrop\(SIZE, scale=\(0\.08, 1\.0\)\)/);
      assert.match(text, /T\.RandomHorizontalFlip\(\)/);
      assert.doesNotMatch(text, /ColorJitter|RandomAffine/);
    });

    await step('pointing at a setting lights its lines', async () => {
      // The pointer is still on the last checkbox clicked: its lines are lit until it leaves.
      assert.match(await litText(), /RandomHorizontalFlip/);
      await page.mouse.move(1, 1);
      await page.waitForFunction(() => !document.querySelector('[data-testid="pytorch-code"] .part.lit'));
      await page.locator('[data-testid="label-smoothing-input"]').hover();
      await page.waitForFunction(() => document.querySelector('[data-testid="pytorch-code"] .part.lit'));
      let lit = await litText();
      assert.match(lit, /CrossEntropyLoss\(label_smoothing=0\.0\)/);
      assert.doesNotMatch(lit, /LR_MULT/);
      // The keyboard's focus does the same.
      await page.locator('[data-testid="lr-mult-input"]').focus();
      await page.waitForFunction(() => /LR_MULT/.test([...document.querySelectorAll('[data-testid="pytorch-code"] .part.lit')].map((e) => e.textContent).join('')));
      lit = await litText();
      assert.match(lit, /LR_MULT = 0\.5/);
      assert.doesNotMatch(lit, /label_smoothing=/);
    });

    await step('train.py is what finetune pytorch writes for these settings', async () => {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.locator('[data-testid="pytorch-download"]').click(),
      ]);
      assert.equal(download.suggestedFilename(), 'train.py');
      const fromPage = path.join(tmpDir, 'page-train.py');
      await download.saveAs(fromPage);
      const fromCli = path.join(tmpDir, 'cli-train.py');
      execFileSync(finetuneBin, ['pytorch', '--strategy', 'last-block', '--lr-mult', '0.5', '--schedule', 'cosine',
        '--augment', '--augment-set', 'crop-flip', '--out', fromCli], { cwd: repoRoot, stdio: 'pipe' });
      const page_ = fs.readFileSync(fromPage, 'utf8');
      assert.equal(page_, fs.readFileSync(fromCli, 'utf8'));
      assert.equal(page_, await code(), 'the download is the code on show');
    });

    await step('split.json names the photos a run holds out', async () => {
      await app.waitFor('[data-testid="worker-status"][data-state="ready"]', READY_TIMEOUT);
      await addAntsAndBees(page, PER_CLASS, READY_TIMEOUT);
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.locator('[data-testid="pytorch-split"]').click(),
      ]);
      const file = path.join(tmpDir, 'split.json');
      await download.saveAs(file);
      const split = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.deepEqual(Object.keys(split.val).sort(), ['ants', 'bees']);
      for (const cls of ['ants', 'bees']) {
        // 20% of 6 photos, rounded: 1 per class, one of the class's own photos.
        assert.equal(split.val[cls].length, 1, JSON.stringify(split));
        const names = await page.locator(`[data-testid="class-card"][data-class-name="${cls}"] img.thumb`).evaluateAll(
          (els) => els.map((e) => e.getAttribute('alt')),
        );
        assert.equal(names.length, PER_CLASS);
        assert.ok(names.includes(split.val[cls][0]), `${split.val[cls][0]} not among ${names}`);
      }
    });

    assert.deepEqual(requests.filter((u) => !isLocal(u)), [], 'nothing leaves localhost');
    assert.equal(app.crashed, null);
  });
});
