// Builds the chat example page's bundle: examples/chat/static/marie-client.js, one IIFE with
// the global `Marie` (socket.io-client bundled in). The Rust example embeds that file
// (include_str!), so it is committed: test/page-bundle.test.mjs fails when it differs from
// what this script builds now.
import { build } from 'esbuild';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');
export const PAGE_BUNDLE = path.resolve(ROOT, '../../examples/chat/static/marie-client.js');

/** The bundle's text, built from src/page.ts. */
export async function buildPage() {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: ['src/page.ts'],
    bundle: true,
    write: false,
    format: 'iife',
    globalName: 'Marie',
    platform: 'browser',
    target: ['es2022'],
    minifySyntax: true,
    minifyWhitespace: true,
    minifyIdentifiers: false,
    lineLimit: 160,
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'silent',
    banner: {
      js: `/* ${pkg.name} ${pkg.version} (with socket.io-client ${pkg.dependencies['socket.io-client']}): the chat page's MARIE client, global \`Marie\`. Built by \`npm run build:page\` in clients/js; do not edit. */`,
    },
  });
  return result.outputFiles[0].text;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = await buildPage();
  await writeFile(PAGE_BUNDLE, text);
  console.log(`wrote ${path.relative(process.cwd(), PAGE_BUNDLE)} (${(Buffer.byteLength(text) / 1024).toFixed(1)} KiB)`);
}
