import { describe, expect, it } from 'vitest';
import { formatToken, mergeTokens, parseToken, TokenStore } from './tokens';

describe('consistency tokens', () => {
  it('parses topic:partition:offset entries, keeping the highest offset per partition', () => {
    const positions = parseToken('orders:1:77, tickets:3:1042,orders:1:70');
    expect([...positions]).toEqual([
      ['orders:1', 77],
      ['tickets:3', 1042],
    ]);
  });

  it('ignores malformed entries', () => {
    expect(formatToken(parseToken('garbage,tickets:x:1,:1:2,tickets:1,tickets:2:5'))).toBe('tickets:2:5');
    expect(formatToken(parseToken(''))).toBe('');
    expect(formatToken(parseToken(null))).toBe('');
  });

  it('merges two tokens with the max offset per topic:partition', () => {
    expect(mergeTokens('orders:1:77,tickets:3:1042', 'tickets:3:1000,tickets:0:5,orders:1:80')).toBe(
      'orders:1:80,tickets:0:5,tickets:3:1042',
    );
  });

  it('merging is commutative and idempotent', () => {
    const a = 'users:2:9,tickets:1:4';
    const b = 'tickets:1:7,orders:0:1';
    expect(mergeTokens(a, b)).toBe(mergeTokens(b, a));
    expect(mergeTokens(mergeTokens(a, b), b)).toBe(mergeTokens(a, b));
    expect(mergeTokens(a, '')).toBe(formatToken(parseToken(a)));
  });

  it('a store keeps the merged token and survives a reload of the tab', () => {
    const store = new TokenStore(sessionStorage, 'test-token');
    expect(store.current).toBe('');
    store.observe('tickets:2:10');
    store.observe('orders:1:3,tickets:2:8');
    store.observe(null);
    expect(store.current).toBe('orders:1:3,tickets:2:10');
    expect(new TokenStore(sessionStorage, 'test-token').current).toBe('orders:1:3,tickets:2:10');
    store.clear();
    expect(new TokenStore(sessionStorage, 'test-token').current).toBe('');
  });
});
