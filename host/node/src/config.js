// Where things are and who calls, configured like the native command line:
// CLOUDSYNC_ROOT (the device side), CLOUDSYNC_CLOUD (a dir:// folder cloud,
// default <root>/cloud, or a webdav:// server with CLOUDSYNC_WEBDAV_USERNAME
// and CLOUDSYNC_WEBDAV_PASSWORD), CLOUDSYNC_APP (the calling app; default
// cloudsync.cli) and CLOUDSYNC_POLICY (a TOML file: bundle, system_app,
// permissions, cloud_switch_off, request_limits). Without a policy the
// caller is the device's owner: a system app holding both permissions.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CLOUDFILE_SYNC = 'ohos.permission.CLOUDFILE_SYNC';
export const CLOUDFILE_SYNC_MANAGER = 'ohos.permission.CLOUDFILE_SYNC_MANAGER';
export const GALLERY_BUNDLE = 'media';

/** One TOML value: a string ("…" or '…'), a boolean, or a list of strings. */
function parseValue(text, where) {
  const t = text.trim();
  if (t === 'true' || t === 'false') return t === 'true';
  if (t.startsWith("'") && t.endsWith("'") && t.length >= 2 && !t.slice(1, -1).includes("'")) return t.slice(1, -1);
  if (t.startsWith('"')) {
    try {
      const v = JSON.parse(t);
      if (typeof v === 'string') return v;
    } catch {}
  }
  if (t.startsWith('[') && t.endsWith(']')) {
    const items = [];
    let rest = t.slice(1, -1).trim();
    while (rest) {
      const m = /^("(?:[^"\\]|\\.)*"|'[^']*')\s*(?:,\s*|$)/.exec(rest);
      if (!m) throw new Error(`${where}: the value is not a list of strings`);
      items.push(parseValue(m[1], where));
      rest = rest.slice(m[0].length).trim();
    }
    return items;
  }
  throw new Error(`${where}: the value is not a string, boolean or list of strings`);
}

/** A line without its comment (a `#` outside quotes). */
function uncomment(line) {
  let quote = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#') return line.slice(0, i);
  }
  return line;
}

const POLICY_TYPES = {
  bundle: 'string',
  system_app: 'boolean',
  permissions: 'list',
  cloud_switch_off: 'list',
};

/** The policy file (TOML): `key = value` lines, and a `[request_limits]` table of rates. */
export function parsePolicy(text, file) {
  const out = { request_limits: {} };
  let table = null;
  for (const [n, raw] of text.split('\n').entries()) {
    const where = `${file}:${n + 1}`;
    const line = uncomment(raw).trim();
    if (!line) continue;
    const section = line.match(/^\[([A-Za-z_]+)\]$/);
    if (section) {
      if (section[1] !== 'request_limits') throw new Error(`${where}: unknown table [${section[1]}]`);
      table = out.request_limits;
      continue;
    }
    const kv = line.match(/^("?)([A-Za-z0-9._-]+)\1\s*=\s*(.+)$/);
    if (!kv) throw new Error(`${where}: not key = value`);
    const [key, value] = [kv[2], parseValue(kv[3], where)];
    const into = table ?? out;
    if (Object.hasOwn(into, key) && !(table === null && key === 'request_limits')) {
      throw new Error(`${where}: ${key} is given twice`);
    }
    if (table) {
      if (typeof value !== 'string') throw new Error(`${where}: the rate of ${key} must be a string like "20/min"`);
      parseRate(value);
    } else {
      const type = POLICY_TYPES[key];
      if (!type) throw new Error(`${where}: unknown key ${key}`);
      const ok = type === 'list' ? Array.isArray(value) : typeof value === type;
      if (!ok) throw new Error(`${where}: ${key} must be ${type === 'list' ? 'a list of strings' : `a ${type}`}`);
    }
    into[key] = value;
  }
  for (const p of out.permissions ?? []) {
    if (![CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER].includes(p)) throw new Error(`${file}: unknown permission ${p}`);
  }
  return out;
}

/** A request limit like `20/min`: { count, windowMs }. */
export function parseRate(text) {
  const m = /^\s*(\d+)\s*\/\s*(s|min|h)\s*$/.exec(text);
  if (!m || Number(m[1]) === 0) throw new Error(`${JSON.stringify(text)} is not a rate like 20/min`);
  return { count: Number(m[1]), windowMs: { s: 1000, min: 60000, h: 3600000 }[m[2]] };
}

export function fromEnv(env = process.env) {
  const base = env.XDG_DATA_HOME || path.join(os.homedir(), '.local/share');
  const root = path.resolve(env.CLOUDSYNC_ROOT || path.join(base, 'cloudsync'));
  let cloud = path.join(root, 'cloud');
  let webdav = null;
  const url = env.CLOUDSYNC_CLOUD;
  if (url && /^webdavs?:\/\//.test(url)) {
    // Reached through the WASI adapter's WebDAV cloud (src/imports/dav-cloud.js).
    const rest = url.replace(/^webdavs?:\/\//, '');
    const host = rest.split('/')[0];
    if (!host) throw new Error(`CLOUDSYNC_CLOUD=${url}: no host (webdav://host[:port]/path)`);
    if (host.includes('@')) {
      throw new Error('a WebDAV URL carries no credentials: set CLOUDSYNC_WEBDAV_USERNAME and CLOUDSYNC_WEBDAV_PASSWORD');
    }
    cloud = null;
    webdav = { url, username: env.CLOUDSYNC_WEBDAV_USERNAME, password: env.CLOUDSYNC_WEBDAV_PASSWORD };
  } else if (url) {
    if (!url.startsWith('dir:///')) {
      throw new Error(`CLOUDSYNC_CLOUD=${url}: the cloud is a folder (dir:///path) or a WebDAV server (webdav://host/path)`);
    }
    cloud = url.slice('dir://'.length).replace(/\/+$/, '');
    if (!cloud) throw new Error(`CLOUDSYNC_CLOUD=${url}: the cloud must be a folder, not the file system's root`);
  }
  const policy = env.CLOUDSYNC_POLICY
    ? parsePolicy(fs.readFileSync(env.CLOUDSYNC_POLICY, 'utf8'), env.CLOUDSYNC_POLICY)
    : null;
  const bundle = policy?.bundle ?? env.CLOUDSYNC_APP ?? 'cloudsync.cli';
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(bundle) || bundle === GALLERY_BUNDLE) {
    throw new Error(`${JSON.stringify(bundle)} is not an app's bundle name`);
  }
  return {
    root,
    cloud,
    webdav,
    bundle,
    permissions: policy ? (policy.permissions ?? []) : [CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER],
    systemApp: policy ? policy.system_app === true : true,
    switchedOff: policy?.cloud_switch_off ?? [],
    requestLimit: policy?.request_limits?.[bundle] ? parseRate(policy.request_limits[bundle]) : null,
    deviceName: os.hostname() || 'node',
  };
}
