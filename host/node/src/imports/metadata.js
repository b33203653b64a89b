// The `metadata` interface as a journal file, `<root>/meta.journal`, in the
// WASI adapter's format: one record per commit, `[body length: u32 LE]
// [first 8 bytes of the body's sha256][body]`, the body a list of changes
// (`[key length: u32][key][1 = put, 0 = delete]`, a put then `[value
// length: u32][value]`). A commit is appended and synced before it counts;
// a torn or damaged record at the end is cut off on opening.

import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { ioError, fromNode } from './errors.js';
import { freshFile, lstat, syncDir } from './fsutil.js';

const digest = (body) => createHash('sha256').update(body).digest().subarray(0, 8);

function encode(changes) {
  const parts = [];
  for (const { key, value } of changes) {
    const k = Buffer.from(key);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(k.length);
    parts.push(len, k);
    if (value === undefined || value === null) {
      parts.push(Buffer.from([0]));
    } else {
      const vlen = Buffer.alloc(5);
      vlen[0] = 1;
      vlen.writeUInt32LE(value.length, 1);
      parts.push(vlen, Buffer.from(value.buffer, value.byteOffset, value.length));
    }
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length);
  return Buffer.concat([head, digest(body), body]);
}

/** The changes of the whole record at `at`, and where the next starts; null at a torn or damaged one. */
function recordAt(bytes, at) {
  if (at + 12 > bytes.length) return null;
  const len = bytes.readUInt32LE(at);
  if (at + 12 + len > bytes.length) return null;
  const body = bytes.subarray(at + 12, at + 12 + len);
  if (!digest(body).equals(bytes.subarray(at + 4, at + 12))) return null;
  const changes = [];
  let i = 0;
  while (i < body.length) {
    if (i + 4 > body.length) return null;
    const klen = body.readUInt32LE(i);
    i += 4;
    if (i + klen + 1 > body.length) return null;
    const key = body.subarray(i, i + klen).toString('utf8');
    i += klen;
    const tag = body[i++];
    if (tag === 0) {
      changes.push([key, undefined]);
    } else if (tag === 1) {
      if (i + 4 > body.length) return null;
      const vlen = body.readUInt32LE(i);
      i += 4;
      if (i + vlen > body.length) return null;
      changes.push([key, new Uint8Array(body.subarray(i, i + vlen))]);
      i += vlen;
    } else return null;
  }
  return [changes, at + 12 + len];
}

/** A key is `<kind>/<bundle>/…`: an app reaches only the records of bundles it may act for. */
function bundleOf(key) {
  const parts = key.split('/');
  if (parts.length < 3 || parts[1] === '') {
    throw ioError('permission-denied', `metadata key ${JSON.stringify(key)} is not <kind>/<bundle>/…`);
  }
  return parts[1];
}

export function metadata(config, grant) {
  let journal = null;

  function open() {
    if (journal) return journal;
    const path = `${config.root}/meta.journal`;
    // Never through a link: a journal that is one would be written wherever it points.
    const found = lstat(path);
    if (found && found.kind !== 'file') {
      throw ioError('escapes-sandbox', `${path} is not a regular file (links are never followed)`);
    }
    try {
      fs.mkdirSync(config.root, { recursive: true });
      const bytes = fs.existsSync(path) ? fs.readFileSync(path) : Buffer.alloc(0);
      const map = new Map();
      let at = 0;
      let damaged = 0;
      for (;;) {
        const r = recordAt(bytes, at);
        if (r) {
          for (const [k, v] of r[0]) v === undefined ? map.delete(k) : map.set(k, v);
          at = r[1];
          continue;
        }
        // The next whole record after damaged bytes, if any: damage inside
        // (whole records after it) is no torn append.
        let k = at + 1;
        while (k < bytes.length && !recordAt(bytes, k)) k++;
        if (k >= bytes.length) break;
        damaged += k - at;
        at = k;
      }
      const fd = fs.openSync(path, 'a');
      journal = { path, map, fd, len: at };
      if (damaged > 0) {
        // What the damaged record changed is unknown, so what the records
        // after it say never was: the journal starts empty and the next
        // sync compares both sides afresh (nothing deleted for want of a record).
        map.clear();
        const keep = `${path}.damaged-${Date.now()}`;
        const copy = freshFile(keep);
        try {
          fs.writeSync(copy, bytes);
          fs.fsyncSync(copy);
        } finally {
          fs.closeSync(copy);
        }
        console.error(
          `cloudsync: warning: ${path}: ${damaged} bytes inside it were damaged; it was kept as ${keep} and made anew, empty. The next sync compares both sides afresh: every difference is kept as a conflict copy or downloaded, and nothing is deleted on either side`,
        );
        rewrite(journal);
      } else if (at < bytes.length) {
        console.error(`cloudsync: ${path}: ${bytes.length - at} bytes after the last whole commit were cut off`);
        fs.ftruncateSync(fd, at);
        fs.fsyncSync(fd);
      }
      return journal;
    } catch (e) {
      throw fromNode(e, path);
    }
  }

  /** Writes the journal anew as one record of the whole map, beside it, then over it. */
  function rewrite(j) {
    const record = encode([...j.map].map(([key, value]) => ({ key, value })));
    const temp = `${j.path}.new`;
    const fd = freshFile(temp);
    try {
      fs.writeSync(fd, record);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, j.path);
    syncDir(config.root);
    fs.closeSync(j.fd);
    j.fd = fs.openSync(j.path, 'a');
    j.len = record.length;
  }

  const check = (key) => grant(bundleOf(key));

  return {
    get(key) {
      check(key);
      return open().map.get(key);
    },

    scanPage(prefix, after, max) {
      check(prefix);
      const j = open();
      // The keys in byte order, sorted once per commit, not once per page.
      j.sorted ??= [...j.map.keys()]
        .map((k) => [Buffer.from(k), k])
        .sort((x, y) => Buffer.compare(x[0], y[0]));
      const start = Buffer.from(prefix);
      const past = after === undefined ? null : Buffer.from(after);
      // After `after` (excluded) when it is at or past the prefix; else from the prefix on.
      const inclusive = past === null || Buffer.compare(past, start) < 0;
      const from = inclusive ? start : past;
      let lo = 0;
      let hi = j.sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const c = Buffer.compare(j.sorted[mid][0], from);
        if (c < 0 || (c === 0 && !inclusive)) lo = mid + 1;
        else hi = mid;
      }
      const out = [];
      const n = Math.min(Math.max(max, 1), 65536);
      for (let i = lo; i < j.sorted.length && out.length < n; i++) {
        const key = j.sorted[i][1];
        if (!key.startsWith(prefix)) break;
        out.push([key, j.map.get(key)]);
      }
      return out;
    },

    commit(changes) {
      for (const c of changes) check(c.key);
      const j = open();
      const record = encode(changes);
      try {
        let done = 0;
        while (done < record.length) done += fs.writeSync(j.fd, record, done);
        fs.fdatasyncSync(j.fd);
      } catch (e) {
        // Nothing half-written stays to be read as a commit (or to hide the next).
        try {
          fs.ftruncateSync(j.fd, j.len);
        } catch {}
        throw fromNode(e, j.path);
      }
      j.len += record.length;
      for (const { key, value } of changes) {
        if (value === undefined || value === null) j.map.delete(key);
        else j.map.set(key, value);
      }
      j.sorted = null;
    },
  };
}
