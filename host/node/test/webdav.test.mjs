// A WebDAV cloud from Node (CLOUDSYNC_CLOUD=webdav://…, reached through the
// WASI adapter's WebDAV cloud): two devices, each its own process, on one
// rclone WebDAV server on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { fromEnv } from '../src/config.js';

const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const APP = 'com.example.notes';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudsync-dav-'));
let server;
let url;

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function listening(port) {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => (c.end(), resolve(true))).on('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('rclone serve webdav did not start');
}

before(async () => {
  const port = await freePort();
  fs.mkdirSync(path.join(dir, 'server'));
  server = spawn(
    'rclone',
    ['serve', 'webdav', path.join(dir, 'server'), '--addr', `127.0.0.1:${port}`, '--user', 'alice', '--pass', 'wonderland', '--config', '/dev/null'],
    { stdio: 'ignore' },
  );
  await listening(port);
  url = `webdav://127.0.0.1:${port}/`;
});

after(() => {
  server?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** One FileSync run on `device`, as an app script: its last state and error. */
function sync(device, cloud = url) {
  const script = path.join(dir, 'sync.ts');
  fs.writeFileSync(
    script,
    `import { cloudSync } from '@kit.CoreFileKit';
     const s = new cloudSync.FileSync();
     s.on('progress', (p: cloudSync.SyncProgress) => {
       if (p.state !== cloudSync.SyncState.UPLOADING && p.state !== cloudSync.SyncState.DOWNLOADING) {
         console.log(JSON.stringify([p.state, p.error]));
       }
     });
     s.start().catch((e) => console.log(JSON.stringify(['error', e.code, e.message])));`,
  );
  const r = spawnSync(process.execPath, ['--import', path.join(pkg, 'register.mjs'), script], {
    env: {
      ...process.env,
      CLOUDSYNC_ROOT: path.join(dir, device),
      CLOUDSYNC_APP: APP,
      CLOUDSYNC_CLOUD: cloud,
      CLOUDSYNC_WEBDAV_USERNAME: 'alice',
      CLOUDSYNC_WEBDAV_PASSWORD: 'wonderland',
    },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const folder = (device) => path.join(dir, device, 'apps', APP, 'cloud');
function put(device, p, data) {
  fs.mkdirSync(path.dirname(path.join(folder(device), p)), { recursive: true });
  fs.writeFileSync(path.join(folder(device), p), data);
}
function snapshot(root) {
  const out = {};
  const walk = (d, rel) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out[r] = fs.readFileSync(path.join(d, e.name)).toString('hex');
    }
  };
  walk(root, '');
  return out;
}

const COMPLETED = [4, 0];

test('two Node devices on one WebDAV server converge and keep both edits', () => {
  put('a', 'notes/todo.txt', 'buy milk');
  put('a', 'photos/big.raw', Buffer.alloc((2 << 20) + 123, 9));
  assert.deepEqual(sync('a'), COMPLETED);
  assert.ok(fs.existsSync(path.join(dir, 'server', APP, 'photos/big.raw')), 'plain files at their paths');

  assert.deepEqual(sync('b'), COMPLETED);
  assert.deepEqual(snapshot(folder('b')), snapshot(folder('a')));

  put('a', 'notes/todo.txt', 'buy oat milk');
  put('b', 'notes/todo.txt', 'buy milk and bread');
  fs.rmSync(path.join(folder('b'), 'photos/big.raw'));
  assert.deepEqual(sync('a'), COMPLETED);
  assert.deepEqual(sync('b'), COMPLETED);
  assert.deepEqual(sync('a'), COMPLETED);
  const a = snapshot(folder('a'));
  assert.deepEqual(snapshot(folder('b')), a, 'both devices converge');
  const texts = Object.values(a).map((h) => Buffer.from(h, 'hex').toString());
  assert.ok(texts.includes('buy oat milk') && texts.includes('buy milk and bread'), 'both edits kept');
  assert.ok(!('photos/big.raw' in a), 'the deletion came across');
  const left = fs.readdirSync(path.join(dir, 'server', '.cloudsync/staging'), { recursive: true })
    .filter((n) => fs.statSync(path.join(dir, 'server', '.cloudsync/staging', n)).isFile());
  assert.deepEqual(left, [], 'nothing staged is left');
});

test('a WebDAV server that is not there fails start with 22400002 and its reason, changing nothing', async () => {
  put('c', 'keep.txt', 'mine');
  const before = snapshot(folder('c'));
  const port = await freePort();
  const [what, code, message] = sync('c', `webdav://127.0.0.1:${port}/`);
  assert.deepEqual([what, code], ['error', 22400002]);
  assert.match(message, /refused the connection/);
  assert.deepEqual(snapshot(folder('c')), before);
});

test('a WebDAV URL with credentials in it is refused', () => {
  const env = { CLOUDSYNC_ROOT: path.join(dir, 'd'), CLOUDSYNC_CLOUD: 'webdav://u:p@h/dav' };
  assert.throws(() => fromEnv(env), /carries no credentials/);
  assert.throws(() => fromEnv({ ...env, CLOUDSYNC_CLOUD: 'webdav:///dav' }), /no host/);
  assert.equal(fromEnv({ ...env, CLOUDSYNC_CLOUD: 'webdavs://h:8443/dav' }).webdav.url, 'webdavs://h:8443/dav');
});
