// The seed's API as an ArkTS developer meets it in Node: numbers, forms,
// codes and where they come from.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Folders the tests made: removed when they are done. */
const made = [];
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** Runs `code` (TypeScript, the kits importable) with `policy` and files in the cloud; its stdout lines. */
function run(code, { policy, cloud = {}, flags = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudsync-api-'));
  made.push(dir);
  for (const [p, data] of Object.entries(cloud)) {
    fs.mkdirSync(path.dirname(path.join(dir, 'cloud', p)), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cloud', p), data);
  }
  fs.mkdirSync(path.join(dir, 'cloud'), { recursive: true });
  const env = { ...process.env, CLOUDSYNC_ROOT: path.join(dir, 'device'), CLOUDSYNC_CLOUD: `dir://${dir}/cloud` };
  if (policy) {
    fs.writeFileSync(path.join(dir, 'policy.toml'), policy);
    env.CLOUDSYNC_POLICY = path.join(dir, 'policy.toml');
  }
  const file = path.join(dir, 'app.ts');
  fs.writeFileSync(file, code);
  const r = spawnSync(process.execPath, [...flags, '--import', path.join(pkg, 'register.mjs'), file], {
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return { lines: r.stdout.trim().split('\n'), dir };
}

const APP_ONLY = 'bundle = "com.example.notes"\nsystem_app = false\npermissions = []\n';

test('enums carry the seed numbers', () => {
  const { lines } = run(`
    import { cloudSync } from '@kit.CoreFileKit';
    const s = cloudSync;
    console.log(JSON.stringify([s.State.STOPPED, s.DownloadErrorType.FREQUENT_USER_REQUESTS, s.SyncState.STOPPED,
      s.ErrorType.DEVICE_TEMPERATURE_TOO_HIGH, s.FileSyncState.UPLOAD_FAILURE, s.OptimizeState.FAILED]));
  `);
  assert.deepEqual(JSON.parse(lines[0]), [3, 5, 5, 7, 6, 2]);
});

test('201 and 202 come from the methods, never the constructors', () => {
  const { lines } = run(
    `
    import { cloudSync } from '@kit.CoreFileKit';
    import { BusinessError } from '@kit.BasicServicesKit';
    const gallery = new cloudSync.GallerySync();
    const download = new cloudSync.Download();
    const other = new cloudSync.FileSync('com.other.app');
    console.log('constructed');
    for (const f of [() => gallery.on('progress', () => {}), () => download.on('progress', () => {})]) {
      try { f(); } catch (e) { console.log(e instanceof BusinessError, (e as BusinessError).code); }
    }
    await other.start().catch((e: BusinessError) => console.log('start', e.code));
    await gallery.start().catch((e: BusinessError) => console.log('gallery', e.code));
    const mine = new cloudSync.FileSync();
    await mine.start();
    console.log('own folder', await mine.getLastSyncTime() >= 0);
  `,
    { policy: APP_ONLY },
  );
  assert.deepEqual(lines, ['constructed', 'true 201', 'true 201', 'start 201', 'gallery 201', 'own folder true']);
});

test('a system API without system-app standing is 202', () => {
  const { lines } = run(
    `
    import { cloudSync } from '@kit.CoreFileKit';
    const gallery = new cloudSync.GallerySync();
    gallery.start((err) => console.log(err.code));
  `,
    { policy: 'bundle = "com.a"\nsystem_app = false\npermissions = ["ohos.permission.CLOUDFILE_SYNC"]\n' },
  );
  assert.deepEqual(lines, ['202']);
});

test('401 for bad parameters, synchronously where the seed is synchronous', () => {
  const { lines } = run(`
    import { cloudSync } from '@kit.CoreFileKit';
    const cache = new cloudSync.CloudFileCache();
    for (const f of [() => cache.on('bogus', () => {}), () => cache.off('bogus'), () => cloudSync.getFileSyncState(''),
                     () => cache.on('progress', 'not a function' as any)]) {
      try { f(); console.log('no error'); } catch (e) { console.log(e.code); }
    }
    await cache.start('').catch((e) => console.log('start', e.code));
    await cloudSync.getFileSyncState(new Array(101).fill('file://x/y')).catch((e) => console.log('101 uris', e.code));
    await cloudSync.startOptimizeSpace({ totalSize: 1, agingDays: 1 }).catch((e) => console.log('no callback', e.code));
  `);
  assert.deepEqual(lines, ['401', '401', '401', '401', 'start 401', '101 uris 401', 'no callback 401']);
});

test('a download: events by callback, off with and without one, the AsyncCallback form', () => {
  const { lines, dir } = run(
    `
    import { cloudSync, fileUri } from '@kit.CoreFileKit';
    const cache = new cloudSync.CloudFileCache();
    const uri = fileUri.getUriFromPath('/data/storage/el2/cloud/docs/a b.txt');
    console.log(uri);
    const seen: number[] = [];
    const quiet = () => console.log('never');
    cache.on('progress', quiet);
    cache.off('progress', quiet);
    await new Promise<void>((resolve) => {
      cache.on('progress', (p) => { seen.push(p.state); if (p.state !== cloudSync.State.RUNNING) resolve(); });
      cache.start(uri);
    });
    console.log(JSON.stringify(seen.slice(-1)), cloudSync.getFileSyncState(uri));
    cache.off('progress');
    cache.start(uri, (err) => console.log('again', err));
  `,
    { policy: 'bundle = "com.example.notes"\nsystem_app = true\npermissions = ["ohos.permission.CLOUDFILE_SYNC"]\n', cloud: { 'com.example.notes/docs/a b.txt': 'hello' } },
  );
  assert.deepEqual(lines, [
    'file://com.example.notes/data/storage/el2/cloud/docs/a%20b.txt',
    '[1] 2',
    'again undefined',
  ]);
  assert.equal(fs.readFileSync(path.join(dir, 'device/apps/com.example.notes/cloud/docs/a b.txt'), 'utf8'), 'hello');
});

test('a FileSync run brings both sides together and says so by its events', () => {
  const { lines, dir } = run(
    `
    import { cloudSync } from '@kit.CoreFileKit';
    const sync = new cloudSync.FileSync();
    const states: number[] = [];
    await new Promise<void>((resolve) => {
      sync.on('progress', (p) => { states.push(p.state); if (p.state === cloudSync.SyncState.COMPLETED) resolve(); });
      sync.start();
    });
    console.log(states[0], states[states.length - 1], (await sync.getLastSyncTime()) > 0);
  `,
    { cloud: { 'cloudsync.cli/from-cloud.txt': 'down' } },
  );
  assert.deepEqual(lines, ['2 4 true']);
  assert.equal(fs.readFileSync(path.join(dir, 'device/apps/cloudsync.cli/cloud/from-cloud.txt'), 'utf8'), 'down');
});

test('an object nobody holds goes on with its run and its download (the collector takes nothing that works)', () => {
  const cloud = {};
  for (let i = 0; i < 300; i++) cloud[`cloudsync.cli/f${i}.bin`] = Buffer.alloc(2000, i);
  cloud['cloudsync.cli/big.bin'] = Buffer.alloc(6 << 20, 1);
  const { lines } = run(
    `
    import { cloudSync, fileUri } from '@kit.CoreFileKit';
    const collect = setInterval(() => (globalThis as any).gc(), 1);
    let ended = 0;
    const end = (what: string) => { console.log(what); if (++ended === 2) clearInterval(collect); };
    new cloudSync.FileSync().on('progress', (p) => { if (p.state === cloudSync.SyncState.COMPLETED) end('sync'); });
    const cache = new cloudSync.CloudFileCache();
    cache.on('progress', (p) => { if (p.state !== cloudSync.State.RUNNING) end('download ' + p.state); });
    cache.start(fileUri.getUriFromPath('/data/storage/el2/cloud/big.bin'));
    new cloudSync.FileSync().start();
  `,
    { cloud, flags: ['--expose-gc'] },
  );
  assert.deepEqual([...lines].sort(), ['download 1', 'sync']);
});

test('optimizeStorage waits for a running startOptimizeSpace; codes stay in the tables', () => {
  const { lines } = run(`
    import { cloudSync, fileUri } from '@kit.CoreFileKit';
    import { BusinessError } from '@kit.BasicServicesKit';
    const sync = new cloudSync.FileSync();
    await new Promise<void>((resolve) => {
      sync.on('progress', (p) => { if (p.state === cloudSync.SyncState.COMPLETED) resolve(); });
      sync.start();
    });
    const task = new Promise<number>((resolve) => {
      cloudSync.startOptimizeSpace({ totalSize: 1 << 30, agingDays: 0 }, (p) => {
        if (p.state !== cloudSync.OptimizeState.RUNNING) resolve(p.state);
      });
    });
    await cloudSync.optimizeStorage();
    console.log('task', await task);
    const download = new cloudSync.Download();
    const uri = fileUri.getUriFromPath('/data/storage/el2/cloud/a.txt');
    await download.stop(uri).catch((e: BusinessError) => console.log('stop', e.code));
    await download.start(uri).catch((e: BusinessError) => console.log('start', e.code));
  `, { cloud: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`cloudsync.cli/f${i}.txt`, 'x'.repeat(1000)])) });
  assert.deepEqual(lines, ['task 1', 'stop 401', 'start 401']);
});

test('a refused run is STOPPED, and report() says why', () => {
  const { lines } = run(`
    import { cloudSync } from '@kit.CoreFileKit';
    import fs from 'node:fs';
    const sync = new cloudSync.FileSync();
    const once = () => new Promise<number>((resolve) => {
      const cb = (p) => { if (p.state >= cloudSync.SyncState.DOWNLOAD_FAILED || p.state === cloudSync.SyncState.COMPLETED) { sync.off('progress', cb); resolve(p.state); } };
      sync.on('progress', cb);
      sync.start();
    });
    console.log('first', await once());
    const folder = process.env.CLOUDSYNC_ROOT + '/apps/cloudsync.cli/cloud';
    for (const f of fs.readdirSync(folder)) fs.rmSync(folder + '/' + f, { recursive: true });
    console.log('emptied', await once());
    const r = await sync.report();
    console.log(r.refusal ? 'refusal' : 'none', r.deletedRemote, r.last?.state);
  `, { cloud: { 'cloudsync.cli/a.txt': 'a', 'cloudsync.cli/b.txt': 'b' } });
  assert.deepEqual(lines, ['first 4', 'emptied 5', 'refusal 0 5']);
});

test('an engine that fails ends the work in flight: optimizeStorage rejects, never hangs', () => {
  const { lines } = run(`
    import { cloudSync } from '@kit.CoreFileKit';
    import { BusinessError } from '@kit.BasicServicesKit';
    import { engine } from '${path.join(pkg, 'src/engine.js')}';
    const e = engine();
    const pass = cloudSync.optimizeStorage();
    // The instance fails on its next tick (a trap, or the glue failing).
    const tick = e.exports.engine.tick;
    e.exports.engine.tick = () => { throw new RangeError('Start offset -1 is outside the bounds of the buffer'); };
    await pass.then(() => console.log('resolved'), (err: BusinessError) => console.log('rejected', err.code));
    // A fresh instance answers.
    console.log('again', typeof cloudSync.getFileSyncState, e.exports.engine.tick === tick ? 'old' : 'new');
    await cloudSync.optimizeStorage().then(() => console.log('ok'));
  `);
  assert.deepEqual(lines, ['rejected 13600001', 'again function new', 'ok']);
});

test('work accepted just before the engine fails still ends, failed', () => {
  const { lines } = run(`
    import { cloudSync, fileUri } from '@kit.CoreFileKit';
    import { engine } from '${path.join(pkg, 'src/engine.js')}';
    const e = engine();
    const cache = new cloudSync.CloudFileCache();
    const uri = fileUri.getUriFromPath('/data/storage/el2/cloud/big.bin');
    const ended = new Promise<number>((resolve) => cache.on('progress', (p) => { if (p.state !== cloudSync.State.RUNNING) resolve(p.state); }));
    const sync = new cloudSync.FileSync();
    const synced = new Promise<number>((resolve) => sync.on('progress', (p) => { if (p.state !== cloudSync.SyncState.DOWNLOADING && p.state !== cloudSync.SyncState.UPLOADING) resolve(p.state); }));
    await cache.start(uri);
    await sync.start();
    // In the same turn, before any event: the instance fails.
    e.exports.engine.tick = () => { throw new Error('glue failed'); };
    console.log('download', await ended, 'sync', await synced);
  `, { cloud: { 'cloudsync.cli/big.bin': 'x'.repeat(100000) } });
  assert.deepEqual(lines, ['download 2 sync 3']);
});
