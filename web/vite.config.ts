import { fileURLToPath } from 'node:url';
import { build, defineConfig, type Plugin } from 'vite';

const outDir = fileURLToPath(new URL('../dist/web', import.meta.url));

/**
 * The service worker (src/sw.ts) is built on its own into one classic script at /sw.js — at the root,
 * so that it may take the scope /app/ — with everything it needs inlined (no chunks, no eval).
 */
function serviceWorker(): Plugin {
  return {
    name: 'tresor-service-worker',
    apply: 'build',
    async closeBundle() {
      await build({
        configFile: false,
        logLevel: 'warn',
        publicDir: false,
        build: {
          outDir,
          emptyOutDir: false,
          sourcemap: false,
          target: 'es2022',
          minify: true,
          lib: { entry: fileURLToPath(new URL('src/sw.ts', import.meta.url)), formats: ['iife'], name: 'tresorServiceWorker', fileName: () => 'sw.js' },
        },
      });
    },
  };
}

/**
 * The Tresor web app: built into dist/web and served by Tresor itself under a strict CSP
 * (script-src 'self', style-src 'self'): no inline script or style may end up in the output.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  publicDir: false,
  build: {
    outDir,
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  plugins: [serviceWorker()],
});
