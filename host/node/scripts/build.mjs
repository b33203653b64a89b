// Transpiles the engine built for the `cloudsync-core` world into gen/ with
// jco (synchronous instantiation: the seed's constructors are synchronous).
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
const out = `${here}/gen`;
fs.rmSync(out, { recursive: true, force: true });
const { files } = await transpile(wasm, { name: 'engine', outDir: out, instantiation: 'sync', noTypescript: true });
await writeFiles(files);
fs.writeFileSync(`${out}/package.json`, '{ "type": "module" }\n');
console.log(`transpiled ${wasm} into ${out}`);
