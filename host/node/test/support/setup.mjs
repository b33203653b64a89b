// The prepared setup the seed's examples run in: an app (com.example.notes)
// whose cloud folder holds 1.txt, a gallery whose cloud holds item 1, a
// policy making the caller a system app with both permissions, and one
// FileSync and one GallerySync run already done (1.txt is synced, item 1 is
// a cloud-only placeholder). Usage: node test/setup.mjs DIR
import fs from 'node:fs';
import path from 'node:path';

export const APP = 'com.example.notes';

export function environment(dir) {
  return {
    CLOUDSYNC_ROOT: path.join(dir, 'device'),
    CLOUDSYNC_CLOUD: `dir://${path.join(dir, 'cloud')}`,
    CLOUDSYNC_POLICY: path.join(dir, 'policy.toml'),
  };
}

export async function prepare(dir) {
  const cloud = path.join(dir, 'cloud');
  fs.mkdirSync(path.join(cloud, APP), { recursive: true });
  fs.mkdirSync(path.join(cloud, 'media/Photo/1'), { recursive: true });
  fs.writeFileSync(path.join(cloud, APP, '1.txt'), 'one\n');
  fs.writeFileSync(path.join(cloud, 'media/Photo/1/IMG_0001.jpg'), Buffer.alloc(300 << 10, 7));
  fs.writeFileSync(
    path.join(dir, 'policy.toml'),
    `bundle = "${APP}"\nsystem_app = true\npermissions = ["ohos.permission.CLOUDFILE_SYNC", "ohos.permission.CLOUDFILE_SYNC_MANAGER"]\n`,
  );
  Object.assign(process.env, environment(dir));
  const { cloudSync } = await import('../../src/core-file-kit.js');
  for (const sync of [new cloudSync.FileSync(), new cloudSync.GallerySync()]) {
    await new Promise((resolve, reject) => {
      sync.on('progress', (p) => {
        if (p.state === cloudSync.SyncState.COMPLETED) resolve();
        else if (p.state !== cloudSync.SyncState.DOWNLOADING && p.state !== cloudSync.SyncState.UPLOADING) {
          reject(new Error(`the setup's sync ended ${p.state} (${p.error})`));
        }
      });
      sync.start().catch(reject);
    });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await prepare(process.argv[2]);
