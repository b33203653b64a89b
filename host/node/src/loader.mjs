// Module hooks: the two `@kit` modules, and TypeScript stripped of its types.
import { readFile } from 'node:fs/promises';
import { transform } from 'sucrase';

const KITS = {
  '@kit.CoreFileKit': new URL('./core-file-kit.js', import.meta.url).href,
  '@kit.BasicServicesKit': new URL('./basic-services-kit.js', import.meta.url).href,
};

export async function resolve(specifier, context, next) {
  if (specifier in KITS) return { url: KITS[specifier], shortCircuit: true };
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.startsWith('file:') && /\.(m|c)?ts$/.test(new URL(url).pathname)) {
    const source = await readFile(new URL(url), 'utf8');
    const { code } = transform(source, {
      transforms: ['typescript'],
      disableESTransforms: true,
      filePath: new URL(url).pathname,
    });
    return { format: 'module', source: code, shortCircuit: true };
  }
  return next(url, context);
}
