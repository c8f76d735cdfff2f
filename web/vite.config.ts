/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// Vite compiles the TSX itself (tsconfig "jsx": "react-jsx"); no React plugin is needed.
// `npm run dev` proxies /api to a running `ticketing up` (TICKETING_URL, default :8080).
export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
    target: 'es2022',
  },
  server: {
    proxy: {
      '/api': { target: process.env.TICKETING_URL ?? 'http://127.0.0.1:8080', changeOrigin: false },
    },
  },
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test/setup.ts'],
  },
});
