//! The machine's CPU time over a measurement, from `/proc/stat` (Linux).
//!
//! A rate alone swings with what else the machine did in that second; the CPU a stage spent per
//! operation, every process included (the broker's JVM serving the fetches too), is what a change
//! of the code moves, and on a machine with a few cores it bounds the rate: a stage that needs
//! `c` core-seconds per operation cannot go faster than `cores / c`.

use std::time::Instant;

/// The machine's busy CPU time so far, to measure a stage against.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    busy_ticks: u64,
    at: Instant,
}

/// CPU used by the whole machine during a stage.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CpuUse {
    /// Busy core-seconds (user, system, interrupts; not idle, waiting for I/O or stolen).
    pub core_seconds: f64,
    /// How many cores were busy on average.
    pub cores_busy: f64,
    /// Cores the machine has.
    pub cores: u32,
}

impl CpuClock {
    /// Starts measuring; `None` where `/proc/stat` cannot be read (not Linux).
    pub fn start() -> Option<Self> {
        Some(Self { busy_ticks: busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?, at: Instant::now() })
    }

    /// What the machine used since [`Self::start`].
    pub fn used(&self) -> Option<CpuUse> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let seconds = self.at.elapsed().as_secs_f64();
        let core_seconds = busy_ticks(&stat)?.saturating_sub(self.busy_ticks) as f64 / USER_HZ;
        Some(CpuUse { core_seconds, cores_busy: core_seconds / seconds.max(1e-9), cores: cores(&stat) })
    }
}

impl CpuUse {
    /// Core-microseconds per operation, over `operations`.
    pub fn micros_per_operation(&self, operations: u64) -> f64 {
        self.core_seconds * 1e6 / operations.max(1) as f64
    }
}

/// `USER_HZ`, the unit of CPU time in `/proc`: 100 on every Linux ABI.
pub const USER_HZ: f64 = 100.0;

/// Busy ticks of the `cpu` line: user, nice, system, irq, softirq (not steal: time the
/// hypervisor gave to others is no work of this machine's).
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|t| t.parse().ok()).collect::<Option<_>>()?;
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6))
}

fn cores(stat: &str) -> u32 {
    stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 40 900 7 3 2 1 0 0\ncpu0 50 2 20 450 3 1 1 0 0 0\ncpu1 50 3 20 450 4 2 1 1 0 0\nintr 1 2 3\n";

    #[test]
    fn busy_time_leaves_out_idle_and_io_wait_and_cores_are_counted() {
        assert_eq!(busy_ticks(STAT), Some(100 + 5 + 40 + 3 + 2));
        assert_eq!(cores(STAT), 2);
        assert_eq!(busy_ticks("intr 1\n"), None);
    }

    #[test]
    fn the_machine_clock_moves_on_this_machine() {
        let Some(clock) = CpuClock::start() else { return };
        // Busy for a while, so at least a tick passes.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 60 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = clock.used().expect("read /proc/stat twice");
        assert!(used.core_seconds > 0.0, "{used:?}");
        assert!(used.cores >= 1);
        assert!(used.cores_busy <= f64::from(used.cores) + 0.5, "{used:?}");
    }
}
