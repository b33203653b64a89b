// Every example of the two seeds, run unmodified as an ArkTS developer
// wrote it (`node --import ./register.mjs example.ts`) in the prepared
// setup (test/setup.mjs): each ends on its own, and the calls that are
// valid there succeed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { environment } from './support/setup.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.dirname(here);
const examples = path.join(here, 'examples');

// What each example prints when its calls succeed; the two batch
// getFileSyncState examples pass "file://uri", which is no file URI (14000002).
const EXPECT = {
  '04': [/start download successfully/, /download state:1\b/],
  '05': [/start download successfully/],
  '06': [/stop download successfully/],
  '07': [/stop download successfully/],
  '12': [/start sync successfully/, /syncState: 4\b/],
  '13': [/start sync successfully/],
  '14': [/stop sync successfully/],
  '15': [/stop sync successfully/],
  '20': [/start download successfully/, /download state:1\b/],
  '21': [/start download successfully/],
  '22': [/stop download successfully/],
  '23': [/stop download successfully/],
  '26': [/get file sync state failed with error message: .*error code: 14000002/],
  '27': [/get file sync state with error message: .*error code: 14000002/],
  '29': [/optimize storage successfully/],
  '30': [/start optimize space/],
};
const MAY_FAIL = new Set(['26', '27']);

/** A fresh prepared setup (made anew each time: a copy would change every inode and etag). */
function prepared() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudsync-example-'));
  const setup = spawnSync(process.execPath, [path.join(here, 'support/setup.mjs'), dir], { encoding: 'utf8' });
  assert.equal(setup.status, 0, `the setup failed: ${setup.stdout}${setup.stderr}`);
  return dir;
}

const files = fs.readdirSync(examples).filter((f) => f.endsWith('.ts')).sort();

test('the two seeds hold 31 examples', () => {
  assert.equal(files.length, 31);
});

for (const file of files) {
  const n = file.split('-')[1];
  test(file, () => {
    const dir = prepared();
    const run = spawnSync(process.execPath, ['--import', path.join(pkg, 'register.mjs'), path.join(examples, file)], {
      env: { ...process.env, ...environment(dir) },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const out = run.stdout + run.stderr;
    assert.equal(run.signal, null, `${file} did not end on its own\n${out}`);
    assert.equal(run.status, 0, `${file} exited ${run.status}\n${out}`);
    for (const want of EXPECT[n] ?? []) assert.match(out, want, `${file}\n${out}`);
    if (!MAY_FAIL.has(n)) assert.doesNotMatch(out, /failed|error code|Error code/i, `${file}\n${out}`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
}
