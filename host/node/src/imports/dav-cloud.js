// The `cloud` interface on a WebDAV server (CLOUDSYNC_CLOUD=webdav://…):
// the WASI adapter's own WebDAV cloud (guest/wasi-adapter, transpiled by jco
// into gen/adapter), so that WASI and Node speak the one implementation of
// the protocol the native host speaks, locks included. Its wasi:http runs on
// preview2-shim's synchronous worker; it is given no folders. Grants stay
// here: an app's bucket is opened in the adapter only once `grant` let it.

import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as shim from '@bytecodealliance/preview2-shim';
import { cloudError } from './errors.js';
import { deviceId } from './fsutil.js';
import { wasiCli } from './wasi-cli.js';

const GEN = new URL('../../gen/adapter/', import.meta.url);
const adapterModule = await import(fileURLToPath(new URL('adapter.js', GEN))).catch(() => null);

/** The adapter's imports: WASI from the shim, its settings as arguments and environment. */
function adapterImports(config) {
  const { clocks, filesystem, http, io, random } = shim;
  const env = [['CLOUDSYNC_DEVICE_ID', `node-${deviceId(config.root)}`]];
  if (config.webdav.username !== undefined) {
    env.push(['CLOUDSYNC_WEBDAV_USERNAME', config.webdav.username]);
    env.push(['CLOUDSYNC_WEBDAV_PASSWORD', config.webdav.password ?? '']);
  }
  return {
    ...wasiCli(['cloudsync', '--cloud', config.webdav.url], env),
    'wasi:clocks/monotonic-clock': clocks.monotonicClock,
    'wasi:clocks/wall-clock': clocks.wallClock,
    // No folders: the adapter's files and metadata are never used here.
    'wasi:filesystem/preopens': { getDirectories: () => [] },
    'wasi:filesystem/types': filesystem.types,
    'wasi:http/outgoing-handler': http.outgoingHandler,
    'wasi:http/types': http.types,
    'wasi:io/error': io.error,
    'wasi:io/poll': io.poll,
    'wasi:io/streams': io.streams,
    'wasi:random/insecure-seed': random.insecureSeed,
  };
}

export function davCloud(config, grant) {
  if (!adapterModule) throw new Error('gen/adapter is not built: run `node scripts/build.mjs`');
  const core = (name) => new WebAssembly.Module(fs.readFileSync(new URL(name, GEN)));
  const adapter = adapterModule.instantiate(core, adapterImports(config)).cloud;

  // A result's err comes thrown as the record itself (or wrapped in
  // `payload`); anything else is the adapter failing.
  const call = (f) => {
    try {
      return f();
    } catch (e) {
      const record = e instanceof Error ? e.payload : e;
      if (typeof record?.kind === 'string') throw record;
      throw cloudError('other', `the WebDAV cloud failed: ${e?.message ?? e}`);
    }
  };

  class Bucket {
    #bundle;
    #inner;

    static open(bundle) {
      try {
        grant(bundle);
      } catch (e) {
        throw cloudError(e?.kind === 'permission-denied' ? 'unauthorized' : 'other', e?.message ?? String(e));
      }
      return new Bucket(bundle, call(() => adapter.Bucket.open(bundle)));
    }

    constructor(bundle, inner) {
      this.#bundle = bundle;
      this.#inner = inner;
    }

    ready() {
      if (config.switchedOff.includes(this.#bundle)) {
        throw cloudError('unauthorized', `the cloud switch of ${this.#bundle} is off`);
      }
      return call(() => this.#inner.ready());
    }

    stat(path) {
      return call(() => this.#inner.stat(path));
    }

    listPage(prefix, after, max) {
      return call(() => this.#inner.listPage(prefix, after, max));
    }

    read(path, offset, len, ifMatch) {
      return call(() => this.#inner.read(path, offset, len, ifMatch));
    }

    delete(path, ifMatch) {
      return call(() => this.#inner.delete(path, ifMatch));
    }

    beginUpload(path, precondition) {
      return call(() => this.#inner.beginUpload(path, precondition));
    }
  }

  return {
    Bucket,
    uploadPart: (id, data) => call(() => adapter.uploadPart(id, data)),
    finishUpload: (id) => call(() => adapter.finishUpload(id)),
    abortUpload: (id) => adapter.abortUpload(id),
  };
}
