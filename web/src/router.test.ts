// @vitest-environment node
import { describe, expect, it } from 'vitest';
import { matchPath, safeNext } from './router';

describe('router', () => {
  it('matches paths with parameters', () => {
    expect(matchPath('/tickets/:id', '/tickets/abc')).toEqual({ id: 'abc' });
    expect(matchPath('/tickets/:id', '/tickets/abc/')).toEqual({ id: 'abc' });
    expect(matchPath('/tickets/:id/edit', '/tickets/a%20b/edit')).toEqual({ id: 'a b' });
    expect(matchPath('/tickets/:id', '/tickets')).toBeNull();
    expect(matchPath('/orders', '/orders')).toEqual({});
  });

  it('follows only same-app paths after sign-in', () => {
    expect(safeNext('/orders/1')).toBe('/orders/1');
    expect(safeNext('//evil.example')).toBe('/');
    expect(safeNext('https://evil.example')).toBe('/');
    expect(safeNext(null)).toBe('/');
  });
});
