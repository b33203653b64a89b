// `cloudSync` as an ArkTS developer writes against it (the seeds and
// ../../shared/reference/api.md): classes, functions and enums with the
// seed's names and numbers; Promise and AsyncCallback forms; synchronous
// where the seed is synchronous; BusinessError with the seed's codes, from
// the methods whose tables list them (a constructor never throws 201/202:
// the engine object is made on first use).

import { BusinessError } from './basic-services-kit.js';
import { engine } from './engine.js';

const INVALID_PARAMETER = 401;
const SERVICE_FAILED = 13600001;
const UNKNOWN_ERROR = 13900042;

const numbered = (names) => Object.freeze(Object.fromEntries(names.map((n, i) => [n, i])));
export const State = numbered(['RUNNING', 'COMPLETED', 'FAILED', 'STOPPED']);
export const DownloadErrorType = numbered([
  'NO_ERROR',
  'UNKNOWN_ERROR',
  'NETWORK_UNAVAILABLE',
  'LOCAL_STORAGE_FULL',
  'CONTENT_NOT_FOUND',
  'FREQUENT_USER_REQUESTS',
]);
export const SyncState = numbered(['UPLOADING', 'UPLOAD_FAILED', 'DOWNLOADING', 'DOWNLOAD_FAILED', 'COMPLETED', 'STOPPED']);
export const ErrorType = numbered([
  'NO_ERROR',
  'NETWORK_UNAVAILABLE',
  'WIFI_UNAVAILABLE',
  'BATTERY_LEVEL_LOW',
  'BATTERY_LEVEL_WARNING',
  'CLOUD_STORAGE_FULL',
  'LOCAL_STORAGE_FULL',
  'DEVICE_TEMPERATURE_TOO_HIGH',
]);
export const FileSyncState = numbered([
  'UPLOADING',
  'DOWNLOADING',
  'COMPLETED',
  'STOPPED',
  'TO_BE_UPLOADED',
  'UPLOAD_SUCCESS',
  'UPLOAD_FAILURE',
]);
export const OptimizeState = numbered(['RUNNING', 'COMPLETED', 'FAILED', 'STOPPED']);

/** The WIT's kebab-case case names → the seed's numbers. */
const fromWit = (e) => (name) => e[name.toUpperCase().replaceAll('-', '_')];
const state = fromWit(State);
const downloadError = fromWit(DownloadErrorType);
const syncState = fromWit(SyncState);
const errorType = fromWit(ErrorType);
const fileSyncState = fromWit(FileSyncState);
const optimizeState = fromWit(OptimizeState);

const downloadProgress = (p) => ({
  state: state(p.state),
  processed: Number(p.processed),
  size: Number(p.size),
  uri: p.uri,
  error: downloadError(p.error),
});
const syncProgress = (p) => ({ state: syncState(p.state), error: errorType(p.error) });
const optimizeProgress = (p) => ({ state: optimizeState(p.state), progress: p.progress });

function invalid(message) {
  return new BusinessError(INVALID_PARAMETER, message);
}

function requireString(value, what) {
  if (typeof value !== 'string') throw invalid(`${what} must be a string`);
}

function requireCallback(value, what = 'callback') {
  if (typeof value !== 'function') throw invalid(`${what} must be a function`);
}

/**
 * The seed's two forms of an asynchronous method: with an AsyncCallback as
 * the last argument it is called (err, data) and nothing is returned;
 * without, a Promise. `run` does the work and returns the value (or a Promise).
 */
function asyncForm(callback, run) {
  const promise = (async () => run())();
  if (typeof callback !== 'function') return promise;
  promise.then(
    (data) => callback(undefined, data),
    (err) => callback(err),
  );
  return undefined;
}

/** An engine object: made on first use (and again after the engine restarted), its listeners with it. */
class EngineObject {
  #make;
  #resource = null;
  #generation = -1;
  /** callback → [{ event, id }] */
  #listeners = new Map();

  constructor(make) {
    this.#make = make;
  }

  /** Whether it has listeners (an object that neither listens nor works may go). */
  _listening() {
    return this.#listeners.size > 0;
  }

  /** Keeps this object (and its engine resource) alive: it listens or has work going. */
  _pin() {
    engine().pinned.add(this);
  }

  /** Calls `f(resource, exports)` on the engine's thread of control. */
  _call(f) {
    const e = engine();
    return e.call((x) => {
      if (!this.#resource || this.#generation !== e.generation) {
        this.#resource = this.#make(x);
        this.#generation = e.generation;
        for (const list of this.#listeners.values()) for (const l of list) this.#resource.on(l.event, l.id);
      }
      return f(this.#resource, x);
    });
  }

  _on(event, callback, convert) {
    requireString(event, 'event');
    requireCallback(callback);
    const e = engine();
    const id = e.listen(event, (body) => callback(convert(body.val)));
    try {
      this._call((r) => r.on(event, id));
    } catch (err) {
      e.forget(id);
      throw err;
    }
    const list = this.#listeners.get(callback) ?? [];
    list.push({ event, id });
    this.#listeners.set(callback, list);
    this._pin();
  }

  /**
   * Work this object just started is in flight from now for each of its
   * listeners: if the instance fails before the work's first event, its
   * listeners still hear it end (failed).
   */
  _inFlight(body) {
    const e = engine();
    for (const list of this.#listeners.values()) for (const l of list) e.track(l.id, body);
  }

  _off(event, callback) {
    requireString(event, 'event');
    if (callback !== undefined && callback !== null) {
      requireCallback(callback);
      const list = this.#listeners.get(callback) ?? [];
      const mine = list.filter((l) => l.event === event);
      if (mine.length === 0) {
        // Not registered: nothing to remove (the engine still checks the event name).
        this._call((r) => r.off(event, 0n));
        return;
      }
      for (const l of mine) {
        this._call((r) => r.off(event, l.id));
        engine().forget(l.id);
      }
      const rest = list.filter((l) => l.event !== event);
      rest.length ? this.#listeners.set(callback, rest) : this.#listeners.delete(callback);
      return;
    }
    this._call((r) => r.off(event, undefined));
    for (const [cb, list] of this.#listeners) {
      const rest = list.filter((l) => l.event !== event);
      for (const l of list) if (l.event === event) engine().forget(l.id);
      rest.length ? this.#listeners.set(cb, rest) : this.#listeners.delete(cb);
    }
  }
}

/** Downloads an app's cloud files into its local folder. */
export class CloudFileCache extends EngineObject {
  constructor() {
    super((x) => new x.fileCache.CloudFileCache());
    this._call(() => {});
  }

  on(event, callback) {
    this._on(event, callback, downloadProgress);
  }

  off(event, callback) {
    this._off(event, callback);
  }

  start(uri, callback) {
    return asyncForm(callback, () => {
      requireString(uri, 'uri');
      this._call((r) => r.start(uri));
      this._pin();
      this._inFlight({ tag: 'download', val: { state: 'running', processed: 0n, size: 0n, uri, error: 'no-error' } });
    });
  }

  /** `stop(uri, needClean?)`: the partial data goes unless `needClean` is false. */
  stop(uri, needClean, callback) {
    if (typeof needClean === 'function') [callback, needClean] = [needClean, undefined];
    return asyncForm(callback, () => {
      requireString(uri, 'uri');
      if (needClean !== undefined && typeof needClean !== 'boolean') throw invalid('needClean must be a boolean');
      this._call((r) => r.stop(uri, needClean ?? true));
    });
  }

  /** Evicts the local copy of a synced file (synchronous, as in the seed). */
  cleanCache(uri) {
    requireString(uri, 'uri');
    this._call((r) => r.cleanCache(uri));
  }
}

/** Downloads the original of a cloud-only gallery item (a system API). */
export class Download extends EngineObject {
  constructor() {
    super((x) => x.onDemand.Download.create());
  }

  on(event, callback) {
    this._on(event, callback, downloadProgress);
  }

  off(event, callback) {
    this._off(event, callback);
  }

  start(uri, callback) {
    return asyncForm(callback, () => {
      requireString(uri, 'uri');
      this._call((r) => r.start(uri));
      this._pin();
      this._inFlight({ tag: 'download', val: { state: 'running', processed: 0n, size: 0n, uri, error: 'no-error' } });
    });
  }

  /** Stops the download; its partial file is always deleted. */
  stop(uri, callback) {
    return asyncForm(callback, () => {
      requireString(uri, 'uri');
      this._call((r) => r.stop(uri));
    });
  }
}

const NO_CONFIRMATION = { deletions: false, emptyDevice: false, emptyCloud: false };

class SyncObject extends EngineObject {
  on(event, callback) {
    this._on(event, callback, syncProgress);
  }

  off(event, callback) {
    this._off(event, callback);
  }

  start(callback) {
    return asyncForm(callback, () => {
      this._call((r) => r.start(NO_CONFIRMATION));
      this._pin();
      this._inFlight({ tag: 'sync', val: { state: 'downloading', error: 'no-error' } });
    });
  }

  stop(callback) {
    return asyncForm(callback, () => {
      this._call((r) => r.stop());
    });
  }

  /**
   * What the running or last run did (not the seed's: its events carry only
   * states): counts, `refusal` (why a guard stopped it, having changed
   * nothing), `lastError`, and the names skipped or failed, with why.
   */
  report(callback) {
    return asyncForm(callback, () => {
      const r = this._call((x) => x.report());
      const out = {};
      for (const [k, v] of Object.entries(r)) out[k] = typeof v === 'bigint' ? Number(v) : v;
      out.last = r.last ? syncProgress(r.last) : undefined;
      return out;
    });
  }
}

/** Two-way sync of the gallery with the cloud (a system API). */
export class GallerySync extends SyncObject {
  constructor() {
    super((x) => x.sync.SyncObject.gallerySync());
  }
}

/** Two-way sync of an app's cloud folder: the caller's own, or `bundleName`'s (a system API). */
export class FileSync extends SyncObject {
  constructor(bundleName) {
    if (bundleName !== undefined) {
      requireString(bundleName, 'bundleName');
      if (bundleName === '') throw invalid('bundleName must not be empty');
      // The rule cloudsync_contract::is_bundle_name keeps (the Rust API's too).
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(bundleName) || bundleName === 'media') {
        throw invalid(`${JSON.stringify(bundleName)} is not an app's bundle name`);
      }
    }
    super((x) => x.sync.SyncObject.fileSync(bundleName));
  }

  /** Epoch ms of the last run that completed with no error; 0 if never. */
  getLastSyncTime(callback) {
    return asyncForm(callback, () => Number(this._call((r) => r.getLastSyncTime())));
  }
}

/**
 * `getFileSyncState(uris)`: a Promise (or AsyncCallback) of the states of
 * at most 100 files; `getFileSyncState(uri)`: the state of one, at once.
 */
export function getFileSyncState(uris, callback) {
  if (typeof uris === 'string') {
    try {
      return fileSyncState(engine().call((x) => x.sync.getFileSyncState(uris)));
    } catch (err) {
      // This form lists no 13600001: a failed engine is its 13900042 (as
      // cloudsync_contract::listed maps it for the component's own errors).
      if (err?.code === SERVICE_FAILED) throw new BusinessError(UNKNOWN_ERROR, err.message);
      throw err;
    }
  }
  return asyncForm(callback, () => {
    if (!Array.isArray(uris) || !uris.every((u) => typeof u === 'string')) {
      throw invalid('uris must be an array of strings');
    }
    return engine()
      .call((x) => x.sync.getFileSyncStates(uris))
      .map(fileSyncState);
  });
}

/** Starts an optimisation of `param` (u64s as BigInt), its events to `onProgress` (none: no listener, 401). */
function startOptimize(param, onProgress) {
  const e = engine();
  let id;
  if (onProgress) {
    id = e.listen('optimize', (body) => {
      // The seed's callback hears progress; why a task failed goes to the console.
      if (body.tag === 'optimize-failure') {
        console.warn(`cloudsync: the space optimisation failed: ${body.val.message}`);
        return;
      }
      const p = optimizeProgress(body.val);
      if (p.state !== OptimizeState.RUNNING) e.forget(id);
      onProgress(p);
    });
  }
  try {
    e.call((x) => x.onDemand.startOptimizeSpace(param, id));
    if (id !== undefined) e.track(id, { tag: 'optimize', val: { state: 'running', progress: 1 } });
  } catch (err) {
    if (id !== undefined) e.forget(id);
    throw err;
  }
}

/**
 * One pass of the engine's aging policy (files unused for 30 days; more when
 * under 2 GiB is left); resolves when done, rejects with the failure's code
 * (13600001, 13900042). Waits for a running startOptimizeSpace task.
 */
export function optimizeStorage(callback) {
  return asyncForm(callback, () =>
    new Promise((resolve, reject) => {
      const e = engine();
      let failure;
      const id = e.listen('optimize', (body) => {
        if (body.tag === 'optimize-failure') {
          failure = new BusinessError(body.val.code, body.val.message);
          return;
        }
        const p = optimizeProgress(body.val);
        if (p.state === OptimizeState.RUNNING) return;
        e.forget(id);
        if (p.state === OptimizeState.COMPLETED) resolve();
        else reject(failure ?? new BusinessError(SERVICE_FAILED, 'the optimisation ended without completing'));
      });
      try {
        e.call((x) => x.onDemand.optimizeStorage(id));
        // In flight from now: if the instance fails before its first
        // event, the pass still ends (failed), never left pending.
        e.track(id, { tag: 'optimize', val: { state: 'running', progress: 1 } });
      } catch (err) {
        e.forget(id);
        reject(err);
      }
    }),
  );
}

/** Starts a space optimisation; progress goes to `callback` (none: 401, nothing runs). */
export function startOptimizeSpace(param, callback) {
  return asyncForm(undefined, () => {
    if (typeof param !== 'object' || param === null) throw invalid('param must be an OptimizeSpaceParam');
    const { totalSize, agingDays } = param;
    // Within what the engine takes (u64 bytes, u32 days): never wrapped.
    if (!Number.isSafeInteger(totalSize) || totalSize < 0 || !Number.isInteger(agingDays) || agingDays < 0 || agingDays > 0xffffffff) {
      throw invalid('totalSize must be an integer from 0 to 2^53-1 and agingDays one from 0 to 2^32-1');
    }
    startOptimize({ totalSize: BigInt(totalSize), agingDays }, typeof callback === 'function' ? callback : undefined);
  });
}

/** Stops the running optimisation (synchronous): it ends with STOPPED. */
export function stopOptimizeSpace() {
  engine().call((x) => x.onDemand.stopOptimizeSpace());
}
