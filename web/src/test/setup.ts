import { afterEach } from 'vitest';

// Component tests run in jsdom; the pure helpers' tests in node (no DOM to clean).
if (typeof document !== 'undefined') {
  const { cleanup } = await import('@testing-library/react');
  afterEach(() => {
    cleanup();
    sessionStorage.clear();
  });
}
