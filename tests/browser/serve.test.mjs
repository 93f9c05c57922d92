// `make serve`, the README's first command, gets past trunk's start-up into its build. It used
// to stop at once on every fresh clone: Trunk.toml told trunk's file watcher to ignore `target/`,
// which does not exist there (builds go to ~/.cache/finetune-studio/target), and trunk refuses
// a watch path it cannot resolve. The build itself is the one `make dist` tested: once it has
// started, the server is stopped, so this costs seconds, not a second release build.
//
// Run: `make test-browser` (or `node --test tests/browser/serve.test.mjs`).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './helpers.mjs';

const STARTED = /starting build/;
const START_TIMEOUT = 3 * 60_000;

describe('make serve', { timeout: START_TIMEOUT + 30_000 }, () => {
  it('starts trunk serve on a clone without a target/ folder', async (t) => {
    if (fs.existsSync(path.join(repoRoot, 'target'))) {
      t.diagnostic('this checkout has a target/ folder: the fresh-clone case is not what runs here');
    }
    // Its own output folder and port: the tests' dist/ stays as `make dist` left it.
    const dist = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-dist-'));
    const child = spawn('make', ['--no-print-directory', 'serve'], {
      cwd: repoRoot,
      env: { ...process.env, TRUNK_BUILD_DIST: dist, TRUNK_SERVE_PORT: '18391' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const outcome = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve('timed out'), START_TIMEOUT);
      const onData = (d) => {
        out += d;
        if (STARTED.test(out)) {
          clearTimeout(timer);
          resolve('started');
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve(`exited with ${code}`);
      });
    });
    // make, trunk, cargo and rustc: the whole group.
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    fs.rmSync(dist, { recursive: true, force: true });
    const tail = out.split('\n').slice(-8).join('\n');
    assert.equal(outcome, 'started', `make serve did not start its build:\n${tail}`);
    assert.doesNotMatch(out, /ERROR/, `trunk reported an error:\n${tail}`);
  });
});
