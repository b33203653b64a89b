// `identity` and `device`: who calls (from the configuration) and the
// device's state (Node tells nothing of batteries: a device that can sync).

import os from 'node:os';
import { CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER, GALLERY_BUNDLE } from '../config.js';
import { ioError } from './errors.js';
import { deviceId } from './fsutil.js';

const BUNDLE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** May the caller touch `bundle`'s files? (else throws permission-denied) */
export function granter(config) {
  const has = (p) => config.permissions.includes(p);
  return (bundle) => {
    const ok =
      BUNDLE.test(bundle) &&
      (bundle === config.bundle ||
        has(CLOUDFILE_SYNC_MANAGER) ||
        (bundle === GALLERY_BUNDLE && config.systemApp && has(CLOUDFILE_SYNC)));
    if (!ok) throw ioError('permission-denied', `${config.bundle} may not act for ${bundle}`);
  };
}

export function identity(config) {
  const used = [];
  return {
    callerBundle: () => config.bundle,
    hasPermission: (name) => config.permissions.includes(name),
    isSystemApp: () => config.systemApp,
    admitDownload() {
      const limit = config.requestLimit;
      if (!limit) return;
      const now = Date.now();
      while (used.length && now - used[0] >= limit.windowMs) used.shift();
      if (used.length >= limit.count) {
        throw `${config.bundle} may start ${limit.count} downloads per ${limit.windowMs / 1000} s; try again later`;
      }
      used.push(now);
    },
  };
}

export function device(config) {
  // Conflict copies name the device by its name and a few characters of its
  // id: two machines may share a host name.
  const name = `${config.deviceName || os.hostname() || 'node'}-${deviceId(config.root).slice(0, 4)}`;
  return {
    status: () => ({
      networkAvailable: true,
      wifiAvailable: true,
      batteryPercent: 100,
      charging: true,
      wifiOnly: false,
      overheated: false,
    }),
    nowMs: () => BigInt(Date.now()),
    deviceName: () => name,
  };
}
