//! Load tests and benchmarks of the ticket marketplace.
//!
//! - `loadgen`: an open-model HTTP load generator (constant arrival rate, latencies timed from
//!   each request's scheduled send time) with the marketplace's request mix.
//! - `bench`: starts a broker and the system, measures raw baselines (keyed produce and consume,
//!   store writes and point reads) and the system in the same run, and reports both side by side.

pub mod backlog;
pub mod baseline;
pub mod client;
pub mod cpu;
pub mod mix;
pub mod recorder;
pub mod report;
pub mod run;
pub mod scenario;
pub mod system;

/// Writes a progress line to stderr (these are command-line tools, not services).
pub fn progress_line(line: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Formats a once-a-second progress line of an open-model run.
pub fn format_progress(progress: &run::Progress) -> String {
    format!(
        "[{:>5.0}s] sent {:>8}  in flight {:>5}  answered/s {:>7}  errors {:>4}  p99 {:>8.2} ms",
        progress.elapsed.as_secs_f64(),
        progress.sent,
        progress.in_flight,
        progress.window.completed,
        progress.window.errors,
        progress.window.p99_ms
    )
}
