import { useEffect, useRef } from 'react';
import { useNow } from '../hooks';
import { countdownAnnouncement, describeRemaining, formatCountdown, msUntil } from '../lib/time';
import { useAnnounce } from './ui';

/**
 * Time left until `expiresAt`, ticking every second. The digits are a `timer` (not announced
 * on every tick); screen readers hear the time left only when it crosses a few marks
 * (10, 5, 2, 1 minutes, 30 and 10 seconds) and when it runs out.
 */
export function Countdown({ expiresAt, onExpire }: { expiresAt: string; onExpire?: () => void }) {
  const now = useNow(true);
  const remaining = msUntil(expiresAt, now);
  const announce = useAnnounce();
  const previous = useRef<number | null>(null);
  const expired = remaining <= 0;

  useEffect(() => {
    if (previous.current !== null) {
      const message = countdownAnnouncement(previous.current, remaining);
      if (message) announce(message);
    }
    previous.current = remaining;
  }, [remaining, announce]);

  const fired = useRef(false);
  useEffect(() => {
    if (expired && !fired.current) {
      fired.current = true;
      onExpire?.();
    }
  }, [expired, onExpire]);

  const deadline = new Date(expiresAt);
  const at = Number.isNaN(deadline.getTime()) ? '' : new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit', second: '2-digit' }).format(deadline);
  return (
    <div className={`countdown${remaining < 60_000 ? ' countdown-urgent' : ''}`}>
      <span className="countdown-label">{expired ? 'Time is up' : 'Time left to pay'}</span>
      <span className="countdown-digits" role="timer" aria-label={`${describeRemaining(remaining)} left to pay`} data-testid="countdown">
        {formatCountdown(remaining)}
      </span>
      {at ? <span className="countdown-at">{expired ? `Expired at ${at}` : `Pay by ${at}`}</span> : null}
    </div>
  );
}
