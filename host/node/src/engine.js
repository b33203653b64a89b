// One engine instance per process: the core component transpiled by jco
// (`gen/engine.js`, synchronous instantiation), its core imports made of
// node:fs (src/imports), ticked from the event loop while it has work, its
// events handed to the listeners registered through the API.

import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as shim from '@bytecodealliance/preview2-shim';
import { fromEnv } from './config.js';
import { files } from './imports/files.js';
import { metadata } from './imports/metadata.js';
import { cloud } from './imports/cloud.js';
import { davCloud } from './imports/dav-cloud.js';
import { wasiCli } from './imports/wasi-cli.js';
import { device, granter, identity } from './imports/identity.js';
import { BusinessError } from './basic-services-kit.js';

const GEN = new URL('../gen/', import.meta.url);
/** While jobs wait on nothing the engine can do itself, tick this often. */
const WAIT_MS = 5;
/** CLOUDSYNC_VERBOSE=1: each decision of a sync run on stderr. */
const VERBOSE = /^(1|true|yes)$/i.test(process.env.CLOUDSYNC_VERBOSE ?? '');
/** The service failed (the component trapped). */
const SERVICE_FAILED = 13600001;

/** Every import under its versioned and its plain name (jco looks up either). */
function both(map) {
  const out = {};
  for (const [name, value] of Object.entries(map)) {
    out[`${name}@0.2.0`] = value;
    out[name] = value;
  }
  return out;
}

function wasiImports() {
  const { io } = shim;
  const versioned = {
    // The engine is given no environment, arguments or folders.
    ...wasiCli([], []),
    'wasi:io/error': io.error,
    'wasi:io/poll': io.poll,
    'wasi:io/streams': io.streams,
  };
  const out = {};
  for (const [name, value] of Object.entries(versioned)) {
    out[`${name}@0.2.6`] = value;
    out[name] = value;
  }
  return out;
}

/** Whether `e` is a WIT result's err (the component's own answer), not a failure of the instance. */
function isResultError(e) {
  if (e instanceof BusinessError) return true;
  const payload = e instanceof Error ? e.payload : e;
  return !!payload && typeof payload.code === 'number' && !(e instanceof WebAssembly.RuntimeError);
}

/** A call's error as the seed's BusinessError. */
export function businessError(e) {
  if (e instanceof BusinessError) return e;
  // A result's err comes thrown as the record itself (or wrapped in `payload`).
  const payload = e instanceof Error ? e.payload : e;
  if (payload && typeof payload.code === 'number') return new BusinessError(payload.code, payload.message);
  return new BusinessError(SERVICE_FAILED, `the engine component failed: ${e?.message ?? e}`);
}

export class Engine {
  constructor(config = fromEnv()) {
    this.config = config;
    this.listeners = new Map(); // id → { kind, callback }
    // Objects that listen or have started work: held here, so that the
    // garbage collector (which would drop their engine resources, and with
    // them their downloads) never takes an object whose work goes on.
    this.pinned = new Set();
    this.nextListener = 1n;
    this.pending = false;
    this.timer = null;
    this.generation = 0;
    /** `${listener}:${uri}` → the last event of work not ended yet. */
    this.inFlight = new Map();
    this.start();
  }

  start() {
    if (!this.locked) {
      lock(this.config.root);
      this.locked = true;
    }
    const grant = granter(this.config);
    const { instantiate } = Engine.module;
    const core = (name) => new WebAssembly.Module(fs.readFileSync(new URL(name, GEN)));
    this.exports = instantiate(core, {
      ...both({
        'ohos:cloudsync/types': {},
        'ohos:cloudsync/identity': identity(this.config),
        'ohos:cloudsync/device': device(this.config),
        'ohos:cloudsync/files': files(this.config, grant),
        'ohos:cloudsync/metadata': metadata(this.config, grant),
        'ohos:cloudsync/cloud': this.config.webdav ? davCloud(this.config, grant) : cloud(this.config, grant),
      }),
      ...wasiImports(),
    });
    this.generation += 1;
    this.exports.engine.init();
  }

  /**
   * Calls into the component. Its own errors (a WIT result's err) come back
   * as BusinessErrors; anything else — a trap, or the glue failing (a
   * buffer too large to copy, say) — leaves the instance in doubt, so it is
   * thrown away: the work in flight ends failed, the next call starts afresh.
   */
  call(f) {
    try {
      return f(this.exports);
    } catch (e) {
      if (isResultError(e)) throw businessError(e);
      const err = new BusinessError(SERVICE_FAILED, `the engine component failed: ${e?.message ?? e}`);
      this.restart(err.message);
      throw err;
    } finally {
      this.schedule();
    }
  }

  /** Throws the instance away: what was in flight ends failed, then a fresh one starts. */
  restart(reason) {
    this.exports = null;
    const inFlight = this.inFlight;
    this.inFlight = new Map();
    for (const [key, last] of inFlight) {
      const listener = BigInt(key.split(':')[0]);
      if (last.tag === 'download') {
        this.deliver({ listener, body: { tag: 'download', val: { ...last.val, state: 'failed', error: 'unknown-error' } } });
      } else if (last.tag === 'optimize') {
        this.deliver({ listener, body: { tag: 'optimize-failure', val: { code: SERVICE_FAILED, message: reason } } });
        this.deliver({ listener, body: { tag: 'optimize', val: { ...last.val, state: 'failed' } } });
      } else if (last.tag === 'sync') {
        const state = last.val.state === 'uploading' ? 'upload-failed' : 'download-failed';
        this.deliver({ listener, body: { tag: 'sync', val: { ...last.val, state } } });
      }
    }
    try {
      this.start();
    } catch (e) {
      console.error(`cloudsync: the engine component cannot start again: ${e?.message ?? e}`);
    }
  }

  /** Remembers the work in flight by its last event, to end it if the instance fails. */
  track(listener, body) {
    const key =
      body.tag === 'download' ? `${listener}:${body.val.uri}` : body.tag === 'optimize' || body.tag === 'sync' ? `${listener}:` : null;
    if (key === null) return;
    const running =
      body.tag === 'download' || body.tag === 'optimize'
        ? body.val.state === 'running'
        : body.val.state === 'uploading' || body.val.state === 'downloading';
    if (running && (this.inFlight.size < 4096 || this.inFlight.has(key))) this.inFlight.set(key, body);
    else this.inFlight.delete(key);
  }

  listen(kind, callback) {
    const id = this.nextListener++;
    this.listeners.set(id, { kind, callback });
    return id;
  }

  forget(id) {
    this.listeners.delete(id);
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    setImmediate(() => this.pump());
  }

  pump() {
    this.pending = false;
    if (!this.exports) return;
    let outcome;
    try {
      outcome = this.exports.engine.tick();
    } catch (e) {
      console.error(`cloudsync: the engine component failed: ${e?.message ?? e}`);
      this.restart(`the engine component failed: ${e?.message ?? e}`);
      return;
    }
    for (const event of outcome.events) this.deliver(event);
    if (outcome.next === 'more') this.schedule();
    else if (outcome.next === 'waiting') this.timer = setTimeout(() => this.pump(), WAIT_MS);
    // Nothing runs: an object that no longer listens may go.
    else for (const o of this.pinned) if (!o._listening()) this.pinned.delete(o);
  }

  deliver({ listener, body }) {
    if (body.tag === 'failure-reason') {
      // The seed's events carry only the kind of failure: the words of
      // whoever failed go to the console, for people.
      const [uri, reason] = body.val;
      console.warn(`cloudsync: ${uri}: ${reason}`);
      return;
    }
    if (body.tag === 'decision') {
      // What a sync run does about a path, and why: for logs, when asked.
      const d = body.val;
      // A refusal stops the run having changed nothing: always said, as
      // the seed's STOPPED event cannot say why.
      if (d.action === 'refuse') console.warn(`cloudsync: refused: ${d.bundle}/${d.path}: ${d.reason}`);
      else if (VERBOSE) console.error(`cloudsync: ${d.action} ${d.bundle}/${d.path}: ${d.reason}`);
      return;
    }
    this.track(listener, body);
    const l = this.listeners.get(listener);
    if (!l) return;
    try {
      l.callback(body);
    } catch (e) {
      console.error(`cloudsync: a progress callback threw: ${e?.stack ?? e}`);
    }
  }
}

/** The transpiled component, loaded once. */
Engine.module = await import(fileURLToPath(new URL('engine.js', GEN))).catch((e) => {
  throw new Error(
    `the engine component is not transpiled (${e.message}); run \`npm run build\` in host/node (make test does)`,
  );
});

/**
 * One process at a time on a root: `<root>/node.lock` names the process
 * that holds it; one whose process is gone (killed) is taken over.
 */
function lock(root) {
  fs.mkdirSync(root, { recursive: true });
  const file = `${root}/node.lock`;
  const found = fs.lstatSync(file, { throwIfNoEntry: false });
  if (found && !found.isFile()) {
    throw new BusinessError(SERVICE_FAILED, `${file} is not a regular file (links are never followed)`);
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx');
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      process.once('exit', () => {
        try {
          if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.unlinkSync(file);
        } catch {}
      });
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let holder = NaN;
    try {
      holder = Number(fs.readFileSync(file, 'utf8').trim());
    } catch {}
    // Ours already: an engine of this process that failed to start took it.
    if (holder === process.pid) return;
    if (Number.isInteger(holder) && holder > 0 && alive(holder)) {
      throw new BusinessError(SERVICE_FAILED, `${root} is in use by another cloudsync process (pid ${holder})`);
    }
    fs.rmSync(file, { force: true }); // its process is gone
  }
  throw new BusinessError(SERVICE_FAILED, `cannot take ${file}`);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

let shared = null;
/** The process's engine, made on first use (a failure to start is 13600001, on this call and the next). */
export function engine() {
  if (!shared) {
    try {
      shared = new Engine();
    } catch (e) {
      if (e instanceof BusinessError) throw e;
      const why = e instanceof Error ? e.message : (e?.message ?? JSON.stringify(e));
      throw new BusinessError(SERVICE_FAILED, `cloudsync cannot start: ${why}`);
    }
  }
  return shared;
}
