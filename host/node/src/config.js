// Where things are and who calls, configured like the native command line:
// CLOUDSYNC_ROOT (the device side), CLOUDSYNC_CLOUD (a dir:// folder cloud;
// default <root>/cloud), CLOUDSYNC_APP (the calling app; default
// cloudsync.cli) and CLOUDSYNC_POLICY (a TOML file: bundle, system_app,
// permissions, cloud_switch_off, request_limits). Without a policy the
// caller is the device's owner: a system app holding both permissions.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CLOUDFILE_SYNC = 'ohos.permission.CLOUDFILE_SYNC';
export const CLOUDFILE_SYNC_MANAGER = 'ohos.permission.CLOUDFILE_SYNC_MANAGER';
export const GALLERY_BUNDLE = 'media';

/** The small TOML the policy file is: `key = value`, strings, booleans, string arrays, one table. */
export function parsePolicy(text, file) {
  const out = { request_limits: {} };
  let table = null;
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    const section = line.match(/^\[([A-Za-z_]+)\]$/);
    if (section) {
      if (section[1] !== 'request_limits') throw new Error(`${file}:${n + 1}: unknown table [${section[1]}]`);
      table = out.request_limits;
      continue;
    }
    const kv = line.match(/^("?)([A-Za-z0-9._-]+)\1\s*=\s*(.+)$/);
    if (!kv) throw new Error(`${file}:${n + 1}: not key = value: ${raw}`);
    let value;
    try {
      value = JSON.parse(kv[3]);
    } catch {
      throw new Error(`${file}:${n + 1}: ${kv[3]} is not a string, boolean or list of strings`);
    }
    (table ?? out)[kv[2]] = value;
  }
  const known = ['bundle', 'system_app', 'permissions', 'cloud_switch_off', 'request_limits'];
  for (const k of Object.keys(out)) if (!known.includes(k)) throw new Error(`${file}: unknown key ${k}`);
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
  if (env.CLOUDSYNC_CLOUD) {
    const url = env.CLOUDSYNC_CLOUD;
    if (!url.startsWith('dir:///')) {
      throw new Error(`CLOUDSYNC_CLOUD=${url}: this package's cloud is a folder (dir:///path)`);
    }
    cloud = url.slice('dir://'.length).replace(/\/+$/, '');
  }
  const policy = env.CLOUDSYNC_POLICY
    ? parsePolicy(fs.readFileSync(env.CLOUDSYNC_POLICY, 'utf8'), env.CLOUDSYNC_POLICY)
    : null;
  const bundle = policy?.bundle ?? env.CLOUDSYNC_APP ?? 'cloudsync.cli';
  return {
    root,
    cloud,
    bundle,
    permissions: policy ? (policy.permissions ?? []) : [CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER],
    systemApp: policy ? policy.system_app === true : true,
    switchedOff: policy?.cloud_switch_off ?? [],
    requestLimit: policy?.request_limits?.[bundle] ? parseRate(policy.request_limits[bundle]) : null,
    deviceName: os.hostname() || 'node',
  };
}
