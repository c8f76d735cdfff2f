//! `ticketing rebuild <read-model>`: replay the log into a fresh namespace, then switch reads.

use std::time::Instant;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use platform::projection::{Projection, ReadModels, RebuildReport, rebuild};
use projectors::orders::OrderProjector;
use projectors::tickets::TicketProjector;

use crate::app::{Codecs, LocalServices, connect_log, open_store, tool_registry};
use crate::settings::Settings;

/// The read models `rebuild` knows.
pub const READ_MODELS: &[&str] = &["tickets", "orders"];

/// Rebuilds `read_model`, drawing a progress bar on stderr.
pub async fn run(settings: &Settings, read_model: &str) -> anyhow::Result<RebuildReport> {
    if !READ_MODELS.contains(&read_model) {
        bail!("Unknown read model {read_model:?}; known: {}", READ_MODELS.join(", "));
    }
    let mut local = LocalServices::default();
    let log = connect_log(settings, &mut local).await?;
    let (registry_url, registry_server) = tool_registry(settings, &log).await?;
    let store = open_store(settings, &mut local).await?;
    let read_models = ReadModels::new(store);
    let codecs = Codecs::new(&log, &registry_url)?;
    let projection: Box<dyn Projection> = match read_model {
        "orders" => Box::new(OrderProjector::new(codecs.orders.clone())),
        _ => Box::new(TicketProjector::new(codecs.tickets.clone())),
    };

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("rebuilding {}", projection.name()));
    let started = Instant::now();
    let report = rebuild(&log, projection.as_ref(), &read_models, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish();
    if let Some(server) = registry_server {
        server.abort();
    }
    local.stop().await?;
    let report = report?;
    eprintln!(
        "Rebuilt {} into namespace {}: {} events replayed, {} applied, in {:.1?}; reads now use it.",
        read_model,
        report.namespace,
        report.records,
        report.changed,
        started.elapsed()
    );
    Ok(report)
}
