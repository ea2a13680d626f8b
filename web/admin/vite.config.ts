import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// Served by Tessera under /admin/ with `script-src 'self'`: no inline scripts, no eval.
export default defineConfig({
  base: '/admin/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
});
