// Transpiles the engine built for the `cloudsync-core` world into gen/ with
// jco (synchronous instantiation: the seed's constructors are synchronous),
// and the WASI adapter beside it.
// The component: $CLOUDSYNC_CORE_WASM, else the workspace's
// target/guest-core/wasm32-wasip2/guest/cloudsync_guest.wasm (which
// `cargo build -p cloudsync-tests` and `make test` build).
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import { transpile, writeFiles } from '@bytecodealliance/jco-transpile';

const here = fileURLToPath(new URL('..', import.meta.url));
const wasm =
  process.env.CLOUDSYNC_CORE_WASM ?? `${here}/../../target/guest-core/wasm32-wasip2/guest/cloudsync_guest.wasm`;
if (!fs.existsSync(wasm)) {
  console.error(`${wasm} is not built: run \`cargo build -p cloudsync-tests\` (or make test) first`);
  process.exit(1);
}
// The WASI adapter, for its WebDAV cloud (src/imports/dav-cloud.js): the
// same build's, beside the engine.
const adapter = process.env.CLOUDSYNC_ADAPTER_WASM ?? wasm.replace(/cloudsync_guest\.wasm$/, 'cloudsync_wasi_adapter.wasm');
if (!fs.existsSync(adapter)) {
  console.error(`${adapter} is not built: run \`cargo build -p cloudsync-tests\` (or make test) first`);
  process.exit(1);
}
const out = `${here}/gen`;
fs.rmSync(out, { recursive: true, force: true });
for (const [from, name, dir] of [
  [wasm, 'engine', out],
  [adapter, 'adapter', `${out}/adapter`],
]) {
  const { files } = await transpile(from, { name, outDir: dir, instantiation: 'sync', noTypescript: true });
  await writeFiles(files);
  console.log(`transpiled ${from} into ${dir}`);
}
fs.writeFileSync(`${out}/package.json`, '{ "type": "module" }\n');
