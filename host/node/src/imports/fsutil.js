// What the imports share: stat as the WIT says it, paths beneath a folder
// (no `.`/`..`, no symlink followed anywhere), and a sorted walk.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { ioError, fromNode } from './errors.js';

/** Largest read or write in one call. */
export const IO_MAX = 4 << 20;

export function kindOf(st) {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'folder';
  if (st.isSymbolicLink()) return 'symlink';
  return 'special';
}

/** The metadata of `path` itself, never following a link; undefined when missing. */
export function lstat(path) {
  let st;
  try {
    st = fs.lstatSync(path, { bigint: true, throwIfNoEntry: false });
  } catch (e) {
    throw fromNode(e, path);
  }
  if (!st) return undefined;
  return {
    kind: kindOf(st),
    size: st.size,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    inode: st.ino,
    atimeNs: st.atimeNs,
  };
}

export function checkRelative(rel) {
  if (rel === '') return;
  const bad =
    rel.startsWith('/') || rel.includes('\0') || rel.split('/').some((p) => p === '' || p === '.' || p === '..');
  if (bad) throw ioError('permission-denied', `${JSON.stringify(rel)} is not a relative path without . or .. parts`);
}

/** `base/rel`, after checking that `rel` is clean and none of its folders is a link or a file. */
export function beneath(base, rel) {
  checkRelative(rel);
  if (rel === '') return base;
  const parts = rel.split('/');
  let at = base;
  for (const part of parts.slice(0, -1)) {
    at += '/' + part;
    const s = lstat(at);
    if (!s) break;
    if (s.kind === 'symlink') throw ioError('escapes-sandbox', `${rel}: ${part} is a symlink; links are never followed`);
    if (s.kind !== 'folder') throw ioError('not-a-file', `${rel}: ${part} is not a folder`);
  }
  return `${base}/${rel}`;
}

/** Makes a folder's entries durable. */
/**
 * A new, empty file at `path`, made there and nowhere else: whatever was at
 * the name (a link someone left, say) is removed first, never followed, and
 * the file is created exclusively. Its descriptor.
 */
export function freshFile(path) {
  const s = lstat(path);
  if (s?.kind === 'folder') throw new Error(`${path} is a folder; a file must be made there`);
  if (s) fs.unlinkSync(path);
  return fs.openSync(path, 'wx', 0o644);
}

export function syncDir(dir) {
  let fd;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // A folder that cannot be opened or synced here: as durable as the file system makes it.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

const byBytes = (a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path));

/**
 * Every name under `base` the engine sees: files, links and special files
 * (never followed), empty folders and folders that cannot be read, sorted
 * by their paths' bytes.
 */
export function walk(base) {
  const out = [];
  const stack = [''];
  while (stack.length) {
    const rel = stack.pop();
    const dir = rel ? `${base}/${rel}` : base;
    let names;
    try {
      names = fs.readdirSync(dir, { encoding: 'buffer' });
    } catch (e) {
      if (!rel) throw fromNode(e, base);
      out.push({ path: rel, stat: lstat(dir), problem: `the folder cannot be read: ${e.message}` });
      continue;
    }
    if (names.length === 0 && rel) out.push({ path: rel, stat: lstat(dir), problem: undefined });
    for (const raw of names) {
      const name = raw.toString('utf8');
      const valid = Buffer.from(name, 'utf8').equals(raw);
      const path = rel ? `${rel}/${name}` : name;
      const stat = lstat(valid ? `${dir}/${name}` : Buffer.concat([Buffer.from(`${dir}/`), raw]));
      if (!stat) continue;
      const problem = valid ? undefined : 'the name is not UTF-8';
      if (stat.kind === 'folder' && valid) stack.push(path);
      else out.push({ path, stat, problem });
    }
  }
  return out.sort(byBytes);
}

/**
 * A walk or listing paged out: a page asked for after the last one given
 * goes on from where that one ended; any other is made afresh by `fresh()`
 * (the entries after `after`, in order; `undefined` when there is nothing).
 * Returns the page's entries and where the next starts (`undefined`: the end).
 */
export function pager() {
  let open = null; // { key, last, all, at }
  return (key, after, max, fresh) => {
    let cursor;
    if (open && open.key === key && open.last === after) {
      cursor = open;
    } else {
      const all = fresh();
      if (all === undefined) return undefined;
      cursor = { key, all, at: 0 };
    }
    open = null;
    const end = Math.min(cursor.at + Math.min(Math.max(max, 1), 65536), cursor.all.length);
    const entries = cursor.all.slice(cursor.at, end);
    if (end === cursor.all.length) return { entries, next: undefined };
    const last = entries[entries.length - 1].path;
    open = { key, last, all: cursor.all, at: end };
    return { entries, next: last };
  };
}

/** Entries whose path comes after `after` in byte order (all when undefined). */
export function after(entries, after) {
  if (after === undefined) return entries;
  const a = Buffer.from(after);
  return entries.filter((e) => Buffer.compare(Buffer.from(e.path), a) > 0);
}

/**
 * This root's device id (`<root>/node-device-id`), made once: its staged
 * uploads and lock markers are this device's, its conflict copies say it.
 */
export function deviceId(root) {
  const file = beneath(root, 'node-device-id');
  const s = lstat(file);
  if (s && s.kind !== 'file') throw new Error(`${file} is not a file (links are never followed)`);
  if (s) {
    const id = fs.readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{16}$/.test(id)) return id;
  }
  const id = crypto.randomBytes(8).toString('hex');
  const part = `${file}.${id}.part`;
  const fd = freshFile(part);
  try {
    fs.writeSync(fd, `${id}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(part, file);
  return id;
}
