// `node --import ./host/node/register.mjs app.ts` runs an ArkTS-style
// TypeScript file unmodified: types are stripped, and `@kit.CoreFileKit`
// and `@kit.BasicServicesKit` resolve to this package.
import { register } from 'node:module';

register('./src/loader.mjs', import.meta.url);
