// What hostile users did to the package, kept as tests: links where the
// roots' folders are, a second process on one root, a damaged journal,
// objects made and dropped in a loop, policies that are not what they seem,
// an engine asking for another app's files or cloud.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Folders the tests made: removed when they are done. */
const made = [];
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const APP = 'cloudsync.cli';

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudsync-hostile-'));
  made.push(dir);
  fs.mkdirSync(path.join(dir, 'device'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'cloud'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'outside'), { recursive: true });
  return dir;
}

function env(dir, extra = {}) {
  return { ...process.env, CLOUDSYNC_ROOT: `${dir}/device`, CLOUDSYNC_CLOUD: `dir://${dir}/cloud`, ...extra };
}

const SYNC = `
  import { cloudSync } from '@kit.CoreFileKit';
  const sync = new cloudSync.FileSync();
  await new Promise<void>((resolve) => {
    sync.on('progress', (p) => { if (p.state !== 0 && p.state !== 2) { console.log('end', p.state); resolve(); } });
    sync.start().catch((e) => { console.log('error', e.code, e.message); resolve(); });
  });
`;

function run(dir, code, extra) {
  const file = path.join(dir, `app-${Math.random().toString(36).slice(2)}.ts`);
  fs.writeFileSync(file, code);
  const r = spawnSync(process.execPath, ['--import', path.join(pkg, 'register.mjs'), file], {
    env: env(dir, extra),
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

test('a link where the cloud keeps an app, or where the device keeps its apps, leads nowhere', () => {
  const dir = setup();
  fs.mkdirSync(path.join(dir, 'device/apps', APP, 'cloud'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'device/apps', APP, 'cloud/up.txt'), 'mine');
  fs.symlinkSync(path.join(dir, 'outside'), path.join(dir, 'cloud', APP));
  run(dir, SYNC);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'outside')), [], 'nothing written outside');

  const dir2 = setup();
  fs.mkdirSync(path.join(dir2, 'outside', APP, 'cloud'), { recursive: true });
  fs.writeFileSync(path.join(dir2, 'outside', APP, 'cloud/o.txt'), 'outside');
  fs.symlinkSync(path.join(dir2, 'outside'), path.join(dir2, 'device/apps'));
  fs.mkdirSync(path.join(dir2, 'cloud', APP));
  fs.writeFileSync(path.join(dir2, 'cloud', APP, 'c.txt'), 'from the cloud');
  run(dir2, SYNC);
  assert.deepEqual(fs.readdirSync(path.join(dir2, 'outside', APP, 'cloud')), ['o.txt'], 'nothing written outside');
  assert.deepEqual(fs.readdirSync(path.join(dir2, 'cloud', APP)), ['c.txt'], 'nothing read from outside');
});

test('a journal that is a link is refused, and what it points at is untouched', () => {
  const dir = setup();
  fs.writeFileSync(path.join(dir, 'outside/private.txt'), 'OTHER');
  fs.symlinkSync(path.join(dir, 'outside/private.txt'), path.join(dir, 'device/meta.journal'));
  const r = run(dir, SYNC);
  assert.match(r.out, /cloudsync cannot start: .*meta.journal is not a regular file/, r.out);
  assert.equal(fs.readFileSync(path.join(dir, 'outside/private.txt'), 'utf8'), 'OTHER');
});

test('a second process on the same root is refused while the first works, and a dead one is taken over', async () => {
  const dir = setup();
  fs.mkdirSync(path.join(dir, 'cloud', APP), { recursive: true });
  fs.writeFileSync(path.join(dir, 'cloud', APP, 'big.bin'), Buffer.alloc(4 << 20, 3));
  const hold = path.join(dir, 'hold.ts');
  fs.writeFileSync(
    hold,
    `import { cloudSync } from '@kit.CoreFileKit';
     new cloudSync.CloudFileCache();
     console.log('holding');
     setTimeout(() => {}, 3000);`,
  );
  const first = spawn(process.execPath, ['--import', path.join(pkg, 'register.mjs'), hold], { env: env(dir) });
  await new Promise((resolve) => first.stdout.once('data', resolve));
  const second = run(dir, `import { cloudSync } from '@kit.CoreFileKit';
    try { new cloudSync.CloudFileCache(); console.log('started'); } catch (e) { console.log('refused', e.code, e.message); }`);
  assert.match(second.out, /refused 13600001 .*in use by another cloudsync process/, second.out);
  first.kill('SIGKILL');
  await new Promise((resolve) => first.once('exit', resolve));
  const third = run(dir, `import { cloudSync } from '@kit.CoreFileKit';
    new cloudSync.CloudFileCache(); console.log('started');`);
  assert.match(third.out, /started/, third.out);
});

test('a start that failed can be tried again in the same process', () => {
  const dir = setup();
  fs.writeFileSync(path.join(dir, 'outside/v'), 'O');
  fs.symlinkSync(path.join(dir, 'outside/v'), path.join(dir, 'device/meta.journal'));
  const r = run(
    dir,
    `import { cloudSync } from '@kit.CoreFileKit';
     import fs from 'node:fs';
     try { new cloudSync.CloudFileCache(); } catch (e) { console.log('first', e.code); }
     fs.unlinkSync(process.env.CLOUDSYNC_ROOT + '/meta.journal');
     try { new cloudSync.CloudFileCache(); console.log('again ok'); } catch (e) { console.log('again', e.code, e.message); }`,
  );
  assert.match(r.out, /first 13600001[\s\S]*again ok/, r.out);
});

test('damage inside the journal sets it aside and starts afresh, deleting nothing', () => {
  const dir = setup();
  fs.mkdirSync(path.join(dir, 'cloud', APP), { recursive: true });
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(dir, 'cloud', APP, `f${i}.txt`), `file ${i}`);
  assert.match(run(dir, SYNC).out, /end 4/);
  const journal = path.join(dir, 'device/meta.journal');
  const bytes = fs.readFileSync(journal);
  bytes[Math.floor(bytes.length / 3)] ^= 0xff;
  fs.writeFileSync(journal, bytes);
  // A link where the rewrite goes: the rewrite is made there, nothing followed.
  fs.writeFileSync(path.join(dir, 'outside/private.txt'), 'not the journal');
  fs.symlinkSync(path.join(dir, 'outside/private.txt'), `${journal}.new`);
  const again = run(dir, SYNC);
  assert.equal(fs.readFileSync(path.join(dir, 'outside/private.txt'), 'utf8'), 'not the journal');
  assert.ok(fs.lstatSync(journal).isFile(), 'the journal is a file');
  assert.match(again.out, /were damaged; it was kept as .* and made anew, empty/, again.out);
  assert.match(again.out, /end 4/, again.out);
  assert.ok(fs.readdirSync(path.join(dir, 'device')).some((n) => n.startsWith('meta.journal.damaged-')));
  // Compared afresh: equal files are found equal, nothing doubled or deleted.
  assert.equal(fs.readdirSync(path.join(dir, 'cloud', APP)).length, 40);
  const conflicts = fs.readdirSync(path.join(dir, 'device/apps', APP, 'cloud')).filter((n) => n.includes('conflict'));
  assert.deepEqual(conflicts, []);
});

test('objects made and dropped in a loop are let go', () => {
  const dir = setup();
  const r = run(
    dir,
    `import { cloudSync } from '@kit.CoreFileKit';
     import { engine } from '${path.join(pkg, 'src/engine.js')}';
     for (let i = 0; i < 2000; i++) { const c = new cloudSync.CloudFileCache(); const f = () => {}; c.on('progress', f); c.off('progress', f); }
     setTimeout(() => console.log('pinned', engine().pinned.size), 50);`,
  );
  assert.match(r.out, /pinned 0\b/, r.out);
});

test('a policy is read as written, or refused with where it is wrong', () => {
  const dir = setup();
  const policy = path.join(dir, 'policy.toml');
  const attempt = (text) => {
    fs.writeFileSync(policy, text);
    return run(dir, `import { cloudSync } from '@kit.CoreFileKit';
      try { new cloudSync.CloudFileCache(); console.log('ok'); } catch (e) { console.log('refused', e.code, e.message); }`, {
      CLOUDSYNC_POLICY: policy,
    }).out;
  };
  assert.match(attempt('cloud_switch_off = "com.a.full"\n'), /refused 13600001 .*must be a list of strings/);
  assert.match(attempt('bundle = "../../etc"\n'), /refused 13600001 .*not an app's bundle name/);
  assert.match(attempt("bundle = 'com.a' # the app\nsystem_app = true\n"), /^ok/m);
  assert.match(attempt('bundle = "com.a"\nbundle = "com.b"\n'), /given twice/);
});

test("an engine that asks for another app's area or bucket is refused in open, and what it was granted holds it to its app", () => {
  const dir = setup();
  fs.mkdirSync(path.join(dir, 'device/apps/com.other.app'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'device/apps/com.other.app/secret.txt'), 'OTHER');
  const policy = path.join(dir, 'policy.toml');
  fs.writeFileSync(policy, 'bundle = "com.example.notes"\nsystem_app = false\npermissions = []\n');
  const imports = (name) => path.join(pkg, 'src/imports', name);
  const r = run(
    dir,
    `import { fromEnv } from '${path.join(pkg, 'src/config.js')}';
     import { granter } from '${imports('identity.js')}';
     import { files } from '${imports('files.js')}';
     import { cloud } from '${imports('cloud.js')}';
     const config = fromEnv();
     const { Area } = files(config, granter(config));
     const { Bucket } = cloud(config, granter(config));
     const outcome = (f: () => unknown) => { try { f(); return 'granted'; } catch (e) { return e.kind; } };
     for (const bundle of ['com.other.app', '../com.other.app', '']) {
       console.log(JSON.stringify(bundle), outcome(() => Area.open(bundle)), outcome(() => Bucket.open(bundle)));
     }
     const area = Area.open('com.example.notes');
     console.log('own', area instanceof Area, Bucket.open('com.example.notes') instanceof Bucket);
     console.log('beneath', outcome(() => area.readFile('../com.other.app/secret.txt', 0n, 10)));`,
    { CLOUDSYNC_POLICY: policy },
  );
  assert.deepEqual(r.out.trim().split('\n'), [
    '"com.other.app" permission-denied unauthorized',
    '"../com.other.app" permission-denied unauthorized',
    '"" permission-denied unauthorized',
    'own true true',
    'beneath permission-denied',
  ]);
});
