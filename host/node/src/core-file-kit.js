// `@kit.CoreFileKit`: `cloudSync` and `fileUri`.

import * as cloudSync from './cloud-sync.js';
import { engine } from './engine.js';
import { BusinessError } from './basic-services-kit.js';

/** Percent-encodes what a URI path may not hold as it is. */
function encodePath(path) {
  return Array.from(new TextEncoder().encode(path), (b) => {
    const c = String.fromCharCode(b);
    return /[A-Za-z0-9\-._~/!$&'()*+,;=:@]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

export const fileUri = Object.freeze({
  /** The URI of a path in the calling app's sandbox: `file://<bundle><path>`. */
  getUriFromPath(path) {
    if (typeof path !== 'string') throw new BusinessError(401, 'path must be a string');
    return `file://${engine().config.bundle}${encodePath(path.startsWith('/') ? path : `/${path}`)}`;
  },
});

export { cloudSync };
