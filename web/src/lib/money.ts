/** Prices are numbers in the currency's major unit (20.5 USD); USD when no currency is given. */

export const DEFAULT_CURRENCY = 'USD';

/** The currencies the API accepts (ISO 4217), most used first. */
export const CURRENCIES = [
  'USD', 'EUR', 'GBP', 'CAD', 'AUD', 'CHF', 'JPY', 'SEK', 'NOK', 'DKK', 'PLN', 'CZK', 'HUF', 'RON',
  'NZD', 'SGD', 'HKD', 'CNY', 'INR', 'KRW', 'TWD', 'THB', 'MYR', 'IDR', 'PHP', 'VND', 'BRL', 'MXN',
  'ZAR', 'TRY', 'UAH', 'ILS', 'ISK', 'BHD', 'JOD', 'KWD', 'OMR', 'TND',
] as const;

const formatters = new Map<string, Intl.NumberFormat>();

function formatter(currency: string, locale?: string): Intl.NumberFormat {
  const key = `${locale ?? ''}|${currency}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.NumberFormat(locale, { style: 'currency', currency });
    formatters.set(key, f);
  }
  return f;
}

/** `20.5, 'USD'` → `$20.50` (in the given or the browser's locale). */
export function formatPrice(price: number, currency: string | undefined = DEFAULT_CURRENCY, locale?: string): string {
  const code = (currency || DEFAULT_CURRENCY).toUpperCase();
  try {
    return formatter(code, locale).format(price);
  } catch {
    // A code this browser does not know: show it plainly rather than fail.
    return `${price} ${code}`;
  }
}

/** Digits after the decimal point the currency's minor unit has (2 for USD, 0 for JPY, 3 for KWD). */
export function minorDigits(currency: string | undefined = DEFAULT_CURRENCY): number {
  try {
    return formatter((currency || DEFAULT_CURRENCY).toUpperCase(), 'en').resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}
