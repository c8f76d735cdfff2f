//! Tracing setup shared by every component.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `LOG_FORMAT=json`, human-readable otherwise. Later calls are ignored (tests call it often).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already installed: keep the first one.
    drop(result);
}
