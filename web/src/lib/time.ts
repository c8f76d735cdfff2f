/** Countdown to an order's deadline. */

/** `mm:ss` under an hour, `h:mm:ss` from one hour; never negative. */
export function formatCountdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const ss = String(seconds).padStart(2, '0');
  if (hours > 0) return `${hours}:${String(minutes).padStart(2, '0')}:${ss}`;
  return `${minutes}:${ss}`;
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** The remaining time in words, for screen readers: `4 minutes 5 seconds`. */
export function describeRemaining(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  if (total === 0) return 'no time';
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const parts: string[] = [];
  if (hours) parts.push(plural(hours, 'hour'));
  if (minutes) parts.push(plural(minutes, 'minute'));
  if (seconds && hours === 0) parts.push(plural(seconds, 'second'));
  return parts.join(' ');
}

/** Remaining times (ms) at which the countdown is announced to screen readers. */
export const ANNOUNCE_AT = [10 * 60_000, 5 * 60_000, 2 * 60_000, 60_000, 30_000, 10_000] as const;

/**
 * What to announce when the remaining time went from `before` to `now` (both ms): a message
 * when it crossed one of `ANNOUNCE_AT` (the smallest one crossed) or reached zero, else null.
 * A tick that crosses nothing says nothing, so the live region is not noisy.
 */
export function countdownAnnouncement(before: number, now: number): string | null {
  if (now >= before) return null;
  if (before > 0 && now <= 0) return 'Time is up: the reservation has expired.';
  const crossed = ANNOUNCE_AT.filter((mark) => before > mark && now <= mark);
  if (crossed.length === 0) return null;
  const mark = Math.min(...crossed);
  return `${describeRemaining(mark)} left to pay.`;
}

/** Milliseconds until an ISO time, from `now` (ms since the epoch). */
export function msUntil(iso: string, now: number): number {
  const at = Date.parse(iso);
  return Number.isNaN(at) ? 0 : at - now;
}
