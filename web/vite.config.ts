import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The Tresor web app: built into dist/web and served by Tresor itself under a strict CSP
 * (script-src 'self', style-src 'self'): no inline script or style may end up in the output.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
});
