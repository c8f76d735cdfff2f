//! `loadgen`: open-model load against a running marketplace.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use load_tests::client::{ApiClient, Targets};
use load_tests::mix::{DEFAULT_MIX, Mix, Operation};
use load_tests::run::{Schedule, markdown_table, run_open_model};
use load_tests::scenario::Marketplace;
use load_tests::{format_progress, progress_line};

/// Sends requests at a constant arrival rate with the marketplace's mix and reports latency
/// percentiles per route, timed from each request's scheduled send time.
#[derive(Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// Base URL serving every route (`ticketing up`, or an ingress).
    #[arg(long, env = "LOAD_TARGET", default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Send a route group elsewhere: `GROUP=URL`, GROUP one of users, tickets, orders,
    /// payments, query (repeatable).
    #[arg(long = "route", value_name = "GROUP=URL")]
    routes: Vec<String>,
    /// Requests per second.
    #[arg(long, env = "LOAD_RATE", default_value_t = 100.0)]
    rate: f64,
    /// Seconds of arrivals.
    #[arg(long, env = "LOAD_DURATION", default_value_t = 60.0)]
    duration: f64,
    /// Shares of the mix: browse, show, write (create/update), order, pay, session (signup/signin).
    #[arg(long, env = "LOAD_MIX", default_value = DEFAULT_MIX)]
    mix: Mix,
    /// Users signed up before the run.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Tickets put up for sale before the run (default: enough for every order of the run).
    #[arg(long)]
    tickets: Option<usize>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Do not read writes back to measure how soon they are visible.
    #[arg(long)]
    no_visibility: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as Markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of requests per second");
    }
    if !(args.duration > 0.0 && args.duration.is_finite() && args.timeout > 0.0) {
        bail!("--duration and --timeout must be positive numbers of seconds");
    }
    let mut targets = Targets::single(&args.target);
    for route in &args.routes {
        targets = targets.parse_route(route)?;
    }
    let client = ApiClient::new(targets, Duration::from_secs_f64(args.timeout))?;
    let schedule = Schedule { rate: args.rate, duration: Duration::from_secs_f64(args.duration) };
    let tickets = args.tickets.unwrap_or_else(|| {
        (schedule.arrivals() as f64 * args.mix.fraction(Operation::Order) * 1.2).ceil() as usize + 50
    });

    let mut marketplace = Marketplace::new(client);
    marketplace.measure_visibility = !args.no_visibility;
    progress_line(&format!("Seeding {} users and {tickets} tickets at {} …", args.users, args.target));
    marketplace
        .seed(args.users, tickets, 16)
        .await
        .with_context(|| format!("Failed to seed the marketplace at {}", args.target))?;
    progress_line(&format!(
        "Running {} requests/s for {} s ({} arrivals), mix {} …",
        args.rate,
        args.duration,
        schedule.arrivals(),
        args.mix
    ));
    let report = run_open_model(Arc::new(marketplace), schedule, &args.mix, |p| progress_line(&format_progress(&p))).await;

    let table = markdown_table(&report);
    print!("{table}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("Failed to write {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, &table).with_context(|| format!("Failed to write {}", path.display()))?;
    }
    if report.errors() > 0 {
        progress_line(&format!("{} requests failed (5xx or no answer).", report.errors()));
    }
    Ok(())
}
