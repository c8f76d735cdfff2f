// @vitest-environment node
import { describe, expect, it } from 'vitest';
import { countdownAnnouncement, describeRemaining, formatCountdown, msUntil } from './time';

describe('countdown', () => {
  it('formats the time left as m:ss or h:mm:ss, rounding up, never negative', () => {
    expect(formatCountdown(15 * 60_000)).toBe('15:00');
    expect(formatCountdown(14 * 60_000 + 59_001)).toBe('15:00');
    expect(formatCountdown(65_000)).toBe('1:05');
    expect(formatCountdown(9_500)).toBe('0:10');
    expect(formatCountdown(1)).toBe('0:01');
    expect(formatCountdown(0)).toBe('0:00');
    expect(formatCountdown(-5_000)).toBe('0:00');
    expect(formatCountdown(3_600_000 + 61_000)).toBe('1:01:01');
  });

  it('describes the time left in words', () => {
    expect(describeRemaining(125_000)).toBe('2 minutes 5 seconds');
    expect(describeRemaining(60_000)).toBe('1 minute');
    expect(describeRemaining(1_000)).toBe('1 second');
    expect(describeRemaining(3_725_000)).toBe('1 hour 2 minutes');
    expect(describeRemaining(0)).toBe('no time');
  });

  it('announces only when a mark is crossed or time runs out', () => {
    expect(countdownAnnouncement(301_000, 300_000)).toBe('5 minutes left to pay.');
    expect(countdownAnnouncement(299_000, 298_000)).toBeNull();
    expect(countdownAnnouncement(31_000, 30_000)).toBe('30 seconds left to pay.');
    expect(countdownAnnouncement(11_000, 9_000)).toBe('10 seconds left to pay.');
    // A jump (a tab that slept) over several marks says the smallest one.
    expect(countdownAnnouncement(700_000, 50_000)).toBe('1 minute left to pay.');
    expect(countdownAnnouncement(1_000, 0)).toBe('Time is up: the reservation has expired.');
    expect(countdownAnnouncement(0, -1_000)).toBeNull();
    expect(countdownAnnouncement(5_000, 6_000)).toBeNull();
  });

  it('counts every tick of a 15-minute hold and speaks only a handful of times', () => {
    const spoken: string[] = [];
    for (let left = 15 * 60_000; left > -2_000; left -= 1_000) {
      const message = countdownAnnouncement(left, left - 1_000);
      if (message) spoken.push(message);
    }
    expect(spoken).toEqual([
      '10 minutes left to pay.',
      '5 minutes left to pay.',
      '2 minutes left to pay.',
      '1 minute left to pay.',
      '30 seconds left to pay.',
      '10 seconds left to pay.',
      'Time is up: the reservation has expired.',
    ]);
  });

  it('measures the time until an ISO instant', () => {
    expect(msUntil('2030-01-01T00:00:10.000Z', Date.parse('2030-01-01T00:00:00Z'))).toBe(10_000);
    expect(msUntil('not a date', 0)).toBe(0);
  });
});
