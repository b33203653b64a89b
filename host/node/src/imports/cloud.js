// The `cloud` interface over a folder: objects are plain files at
// `<cloud>/<bundle>/<path>`, uploads staged under `.cloudsync/staging/` and
// moved into place whole and synced: the native folder cloud's layout. An
// app's part is a `Bucket` granted in `open`, the one place a bundle name is
// checked.

import fs from 'node:fs';
import { cloudError, cloudFromIo } from './errors.js';
import { IO_MAX, after, beneath, checkRelative, deviceId, lstat, pager, syncDir, walk } from './fsutil.js';

const CLOUD_KINDS = new Set([
  'not-found',
  'network',
  'throttled',
  'storage-full',
  'unauthorized',
  'precondition-failed',
  'local-no-space',
  'local-io',
  'other',
]);
const parent = (p) => p.slice(0, p.lastIndexOf('/'));
const hex = (n) => BigInt(n).toString(16);
const etag = (s) => `${hex(s.size)}-${hex(s.mtimeNs)}-${hex(s.ctimeNs)}-${hex(s.inode)}`;
const object = (path, s) => ({
  path,
  size: s.size,
  etag: etag(s),
  version: undefined,
  contentHash: undefined,
  modifiedMs: s.mtimeNs / 1000000n,
});

/**
 * Staged uploads of this device's processes that are gone (killed
 * mid-upload) are removed; other devices stage in folders of their own.
 */
function sweepStaging(staging) {
  let names = [];
  try {
    names = fs.readdirSync(staging);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(name.split('-')[0]);
    let gone = true;
    try {
      if (pid === process.pid) gone = false;
      else process.kill(pid, 0), (gone = false);
    } catch (e) {
      gone = e.code !== 'EPERM';
    }
    if (gone) fs.rmSync(`${staging}/${name}`, { force: true });
  }
}

export function cloud(config, grant) {
  const dir = config.cloud;
  const stagingName = `.cloudsync/staging/node-${deviceId(config.root)}`;
  try {
    const staging = beneath(dir, `${stagingName}/x`).slice(0, -2);
    if (lstat(staging)?.kind === 'folder') sweepStaging(staging);
  } catch {
    // A link on the way: nothing is swept through it (uploads refuse it too).
  }
  const uploads = new Map();
  let nextUpload = 0n;
  const listPages = pager();

  const wrap = (f) => {
    try {
      return f();
    } catch (e) {
      if (e instanceof Error) throw cloudFromIo(e);
      if (CLOUD_KINDS.has(e?.kind)) throw e;
      // An io-error of the path checks, as the cloud says it.
      const kind = e?.kind === 'permission-denied' ? 'unauthorized' : 'other';
      throw cloudError(kind, e?.message ?? String(e));
    }
  };

  function file(bundle, path) {
    if (path === '') throw cloudError('other', 'an object needs a path');
    checkRelative(path);
    // From the cloud folder itself: a link at `<bundle>` is refused too.
    return beneath(dir, `${bundle}/${path}`);
  }

  function stat(bundle, path) {
    const s = lstat(file(bundle, path));
    if (!s || s.kind !== 'file') throw cloudError('not-found', `${path}: no such object`);
    return object(path, s);
  }

  function place(u) {
    fs.fsyncSync(u.fd);
    fs.closeSync(u.fd);
    u.fd = undefined;
    const target = file(u.bundle, u.path);
    fs.mkdirSync(parent(target), { recursive: true });
    const now = lstat(target);
    if (now && now.kind !== 'file') {
      throw cloudError('other', `${u.path}: a folder or link is where the file must be; it was left alone`);
    }
    const p = u.precondition;
    if (p.tag === 'if-match') {
      if (!now || etag(now) !== p.val) throw cloudError('precondition-failed', `${u.path} changed: it is not ${p.val}`);
      fs.renameSync(u.staged, target);
    } else if (p.tag === 'if-absent') {
      if (now) throw cloudError('precondition-failed', `${u.path} already exists`);
      try {
        fs.linkSync(u.staged, target); // fails if anything got there meanwhile
      } catch (e) {
        if (lstat(target)) throw cloudError('precondition-failed', `${u.path} already exists`);
        throw e;
      }
      fs.unlinkSync(u.staged); // before the stat: it moves the ctime
    } else {
      fs.renameSync(u.staged, target);
    }
    syncDir(parent(target));
    return stat(u.bundle, u.path);
  }

  class Bucket {
    #bundle;

    static open(bundle) {
      return wrap(() => {
        grant(bundle);
        return new Bucket(bundle);
      });
    }

    constructor(bundle) {
      this.#bundle = bundle;
    }

    stat(path) {
      return wrap(() => stat(this.#bundle, path));
    }

    ready() {
      const bundle = this.#bundle;
      return wrap(() => {
        if (config.switchedOff.includes(bundle)) throw cloudError('unauthorized', `the cloud switch of ${bundle} is off`);
        const s = lstat(dir);
        if (!s || s.kind !== 'folder') throw cloudError('network', `the cloud folder ${dir} is not there`);
      });
    }

    listPage(prefix, since, max) {
      const bundle = this.#bundle;
      return wrap(() => {
        const page = listPages(`${bundle}\n${prefix}`, since, max, () => {
          checkRelative(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
          const top = `${dir}/${bundle}`;
          const s = lstat(top);
          if (s && s.kind !== 'folder') throw cloudError('other', `${top} is not a folder (links are never followed)`);
          const all = s ? walk(top) : [];
          return after(all, since).filter((e) => e.path.startsWith(prefix) && (e.stat.kind !== 'folder' || e.problem));
        });
        const objects = [];
        const skipped = [];
        for (const e of page.entries) {
          if (e.problem) skipped.push({ path: e.path, reason: e.problem });
          else if (e.stat.kind === 'file') objects.push(object(e.path, e.stat));
          else if (e.stat.kind === 'symlink') skipped.push({ path: e.path, reason: 'a symlink (links are never followed)' });
          else skipped.push({ path: e.path, reason: 'not a regular file' });
        }
        return { objects, skipped, next: page.next };
      });
    }

    read(path, offset, len, ifMatch) {
      const bundle = this.#bundle;
      return wrap(() => {
        const before = stat(bundle, path);
        const stale = () => cloudError('precondition-failed', `${path} is not the version asked for`);
        if (ifMatch !== undefined && ifMatch !== before.etag) throw stale();
        const fd = fs.openSync(file(bundle, path), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        let got = 0;
        const buf = Buffer.alloc(Math.min(len, IO_MAX));
        try {
          while (got < buf.length) {
            const n = fs.readSync(fd, buf, got, buf.length - got, offset + BigInt(got));
            if (n === 0) break;
            got += n;
          }
        } finally {
          fs.closeSync(fd);
        }
        if (stat(bundle, path).etag !== before.etag) throw stale();
        return new Uint8Array(buf.buffer, buf.byteOffset, got);
      });
    }

    delete(path, ifMatch) {
      const bundle = this.#bundle;
      return wrap(() => {
        const f = file(bundle, path);
        const s = lstat(f);
        if (!s) return;
        if (s.kind !== 'file') throw cloudError('other', `${path} is not a file; it was left alone`);
        if (ifMatch !== undefined && ifMatch !== etag(s)) throw cloudError('precondition-failed', `${path} changed`);
        fs.unlinkSync(f);
        const top = `${dir}/${bundle}`;
        for (let d = parent(f); d.length > top.length; d = parent(d)) {
          try {
            fs.rmdirSync(d);
          } catch {
            break;
          }
        }
        syncDir(parent(f));
      });
    }

    beginUpload(path, precondition) {
      const bundle = this.#bundle;
      return wrap(() => {
        file(bundle, path);
        // Beneath the cloud folder, through no link.
        const staging = beneath(dir, `${stagingName}/x`).slice(0, -2);
        fs.mkdirSync(staging, { recursive: true });
        if (lstat(staging)?.kind !== 'folder') throw cloudError('other', `${staging} is not a folder (links are never followed)`);
        nextUpload += 1n;
        const staged = `${staging}/${process.pid}-${Date.now()}-${nextUpload}`;
        const fd = fs.openSync(staged, 'wx');
        uploads.set(nextUpload, { bundle, path, precondition, staged, fd });
        return nextUpload;
      });
    }
  }

  return {
    Bucket,

    uploadPart: (id, data) =>
      wrap(() => {
        const u = uploads.get(id);
        if (!u) throw cloudError('other', `no upload ${id}`);
        try {
          let done = 0;
          while (done < data.length) done += fs.writeSync(u.fd, data, done);
        } catch (e) {
          abort(id);
          throw e;
        }
      }),

    finishUpload: (id) =>
      wrap(() => {
        const u = uploads.get(id);
        if (!u) throw cloudError('other', `no upload ${id}`);
        uploads.delete(id);
        try {
          return place(u);
        } finally {
          if (u.fd !== undefined) fs.closeSync(u.fd);
          fs.rmSync(u.staged, { force: true });
        }
      }),

    abortUpload: (id) => abort(id),
  };

  function abort(id) {
    const u = uploads.get(id);
    if (!u) return;
    uploads.delete(id);
    if (u.fd !== undefined) fs.closeSync(u.fd);
    fs.rmSync(u.staged, { force: true });
  }
}
