/**
 * Read-your-writes: every command answer carries `X-Consistency-Token`, a comma-separated list
 * of `topic:partition:offset` naming each write it made. The client keeps, per
 * `topic:partition`, the highest offset it has been handed, and sends them all back on its
 * GETs: a read then waits (bounded) until the read model has applied the client's own writes.
 */

/** Offsets by `topic:partition`. */
export type Positions = Map<string, number>;

/** Parses a token header; malformed entries are ignored. */
export function parseToken(value: string | null | undefined): Positions {
  const positions: Positions = new Map();
  if (!value) return positions;
  for (const raw of value.split(',')) {
    const part = raw.trim();
    const match = /^([^:\s,]+):(-?\d+):(-?\d+)$/.exec(part);
    if (!match) continue;
    const key = `${match[1]}:${Number(match[2])}`;
    const offset = Number(match[3]);
    if (!Number.isSafeInteger(offset)) continue;
    const known = positions.get(key);
    if (known === undefined || offset > known) positions.set(key, offset);
  }
  return positions;
}

/** Formats positions as a token header, sorted so equal sets give equal strings. */
export function formatToken(positions: Positions): string {
  return [...positions.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, offset]) => `${key}:${offset}`)
    .join(',');
}

/** The union of two tokens, keeping the highest offset per `topic:partition`. */
export function mergeTokens(a: string | null | undefined, b: string | null | undefined): string {
  const merged = parseToken(a);
  for (const [key, offset] of parseToken(b)) {
    const known = merged.get(key);
    if (known === undefined || offset > known) merged.set(key, offset);
  }
  return formatToken(merged);
}

/** Holds the latest token of a browser tab (in sessionStorage, so a reload keeps it). */
export class TokenStore {
  private value: string;

  constructor(
    private readonly storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null = safeSessionStorage(),
    private readonly key = 'ticketing.consistency-token',
  ) {
    this.value = formatToken(parseToken(this.storage?.getItem(this.key) ?? ''));
  }

  /** The token to send, or '' when no write has been seen. */
  get current(): string {
    return this.value;
  }

  /** Merges a command answer's token into the kept one. */
  observe(header: string | null | undefined): void {
    if (!header) return;
    const next = mergeTokens(this.value, header);
    if (next === this.value) return;
    this.value = next;
    try {
      this.storage?.setItem(this.key, next);
    } catch {
      // Storage full or disabled: the in-memory token still serves this tab.
    }
  }

  clear(): void {
    this.value = '';
    try {
      this.storage?.removeItem(this.key);
    } catch {
      // ignore
    }
  }
}

function safeSessionStorage(): Storage | null {
  try {
    return typeof sessionStorage === 'undefined' ? null : sessionStorage;
  } catch {
    return null;
  }
}
