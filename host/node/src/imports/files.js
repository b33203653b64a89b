// The `files` interface over node:fs: each app's area `<root>/apps/<bundle>/`,
// an `Area` granted in `open`, the one place a bundle name is checked.

import fs from 'node:fs';
import { ioError, fromNode } from './errors.js';
import { IO_MAX, after, beneath, checkRelative, lstat, pager, syncDir, walk } from './fsutil.js';

const parent = (p) => p.slice(0, p.lastIndexOf('/'));

const io = (what, f) => {
  try {
    return f();
  } catch (e) {
    throw fromNode(e, what);
  }
};

export function files(config, grant) {
  // What the next flush makes durable, per app: shared by all its areas, as
  // a flush covers everything written in the area, through whichever handle.
  const unsynced = new Map(); // bundle → { files, dirs }
  const walkPages = pager();

  class Area {
    #bundle;
    #dir; // the area, from the root: `apps/<bundle>`
    #unsynced;

    static open(bundle) {
      grant(bundle);
      return new Area(bundle);
    }

    constructor(bundle) {
      this.#bundle = bundle;
      this.#dir = `apps/${bundle}`;
      if (!unsynced.has(bundle)) unsynced.set(bundle, { files: new Set(), dirs: new Set() });
      this.#unsynced = unsynced.get(bundle);
    }

    // Resolved from the root itself: `apps` and the area are checked like
    // every other part (a link there would lead out of the root).
    #path(rel) {
      checkRelative(rel);
      return beneath(config.root, rel ? `${this.#dir}/${rel}` : this.#dir);
    }

    #regular(rel) {
      const p = this.#path(rel);
      const s = lstat(p);
      if (!s) throw ioError('not-found', `${rel}: no such file`);
      if (s.kind === 'symlink') throw ioError('escapes-sandbox', `${rel} is a symlink; links are never followed`);
      if (s.kind !== 'file') throw ioError('not-a-file', `${rel} is not a file`);
      return p;
    }

    stat(rel) {
      return lstat(this.#path(rel));
    }

    moveFile(from, to, mode, durable) {
      const src = this.#path(from);
      const dst = this.#path(to);
      if (!lstat(src)) throw ioError('not-found', `${from}: no such file`);
      io(to, () => fs.mkdirSync(parent(dst), { recursive: true }));
      if (mode === 'no-replace') {
        // A hard link fails if anything is there; then the old name goes.
        try {
          fs.linkSync(src, dst);
        } catch (e) {
          if (e.code === 'EEXIST' || lstat(dst)) throw ioError('already-exists', `${to} exists`);
          throw ioError('not-supported', `${to}: no rename without replacing here (${e.message})`);
        }
        io(from, () => fs.unlinkSync(src));
      } else {
        io(to, () => fs.renameSync(src, dst));
      }
      if (durable) {
        syncDir(parent(dst));
        if (parent(src) !== parent(dst)) syncDir(parent(src));
      } else {
        this.#unsynced.dirs.add(parent(dst));
        this.#unsynced.dirs.add(parent(src));
      }
    }

    flush() {
      const { files, dirs } = this.#unsynced;
      for (const p of files) {
        let fd;
        try {
          fd = fs.openSync(p, 'r+');
          fs.fsyncSync(fd);
        } catch (e) {
          if (e.code !== 'ENOENT') throw fromNode(e, p);
        } finally {
          if (fd !== undefined) fs.closeSync(fd);
        }
      }
      files.clear();
      for (const d of dirs) syncDir(d);
      dirs.clear();
    }

    removeFile(rel) {
      const p = this.#path(rel);
      const s = lstat(p);
      if (!s) return;
      if (s.kind === 'folder') throw ioError('not-a-file', `${rel} is a folder`);
      io(rel, () => fs.unlinkSync(p));
      this.#unsynced.files.delete(p);
    }

    createDirAll(rel) {
      const p = this.#path(rel);
      io(rel, () => fs.mkdirSync(p, { recursive: true }));
    }

    removeDir(rel) {
      const p = this.#path(rel);
      const s = lstat(p);
      if (!s) return;
      if (s.kind !== 'folder') throw ioError('not-a-file', `${rel} is not a folder`);
      io(rel, () => fs.rmdirSync(p));
    }

    freeSpace() {
      const a = `${config.root}/${this.#dir}`;
      try {
        const s = fs.statfsSync(lstat(a) ? a : config.root, { bigint: true });
        return s.bavail * s.bsize;
      } catch {
        return undefined;
      }
    }

    fineStamps() {
      return false;
    }

    readFile(rel, offset, len) {
      const p = this.#regular(rel);
      return io(rel, () => {
        const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        try {
          const buf = Buffer.alloc(Math.min(len, IO_MAX));
          let got = 0;
          while (got < buf.length) {
            const n = fs.readSync(fd, buf, got, buf.length - got, offset + BigInt(got));
            if (n === 0) break;
            got += n;
          }
          return new Uint8Array(buf.buffer, buf.byteOffset, got);
        } finally {
          fs.closeSync(fd);
        }
      });
    }

    writeFile(rel, offset, data) {
      if (data.length > IO_MAX) throw ioError('other', `${rel}: more than 4 MiB in one write`);
      const p = this.#path(rel);
      const s = lstat(p);
      if (!s) io(rel, () => fs.mkdirSync(parent(p), { recursive: true }));
      else if (s.kind !== 'file') throw ioError('not-a-file', `${rel} is not a file`);
      io(rel, () => {
        const { O_WRONLY, O_CREAT, O_NOFOLLOW } = fs.constants;
        const fd = fs.openSync(p, O_WRONLY | O_CREAT | O_NOFOLLOW, 0o644);
        try {
          const size = fs.fstatSync(fd, { bigint: true }).size;
          if (offset > size) throw ioError('other', `${rel}: a write at ${offset} is past its end (${size} bytes)`);
          fs.ftruncateSync(fd, Number(offset));
          let done = 0;
          while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, Number(offset) + done);
        } finally {
          fs.closeSync(fd);
        }
      });
      this.#unsynced.files.add(p);
      if (!s) this.#unsynced.dirs.add(parent(p));
    }

    walkPage(dir, since, max) {
      checkRelative(dir);
      return walkPages(`${this.#bundle}\n${dir}`, since, max, () => {
        const base = this.#path(dir);
        const s = lstat(base);
        if (!s) return undefined;
        if (s.kind === 'symlink') throw ioError('escapes-sandbox', `${dir} is a symlink`);
        if (s.kind !== 'folder') throw ioError('not-a-file', `${dir} is not a folder`);
        return after(walk(base), since);
      });
    }
  }

  return { Area };
}
