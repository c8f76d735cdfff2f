// @vitest-environment node
import { describe, expect, it } from 'vitest';
import { formatPrice, minorDigits } from './money';

describe('money', () => {
  it('formats prices in their currency with Intl.NumberFormat', () => {
    expect(formatPrice(20.5, 'USD', 'en-US')).toBe('$20.50');
    expect(formatPrice(20.5, undefined, 'en-US')).toBe('$20.50');
    expect(formatPrice(1500, 'jpy', 'en-US')).toBe('¥1,500');
    expect(formatPrice(12.345, 'KWD', 'en-US')).toMatch(/KWD\s?12\.345/);
    expect(formatPrice(9.99, 'EUR', 'de-DE')).toMatch(/^9,99\s€$/);
  });

  it('knows the minor unit of a currency', () => {
    expect(minorDigits('USD')).toBe(2);
    expect(minorDigits('JPY')).toBe(0);
    expect(minorDigits('BHD')).toBe(3);
  });
});
