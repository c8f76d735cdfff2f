//! One Kafka broker and one Cassandra node per process, started on first use on free loopback
//! ports: what test binaries share (a namespace or keyspace per test keeps tests apart), since
//! a JVM per test would cost seconds and hundreds of MiB each. Tests that stop, restart or kill
//! a broker start their own [`LocalKafka`] instead.
//!
//! The JVMs die with the process (see the watchdog of the process module); their data lives in
//! `$TMPDIR/ticketing-shared-<pid>`, and directories left by processes that are gone are
//! removed at the next start.

use std::path::PathBuf;

use tokio::sync::OnceCell;

use super::{LocalCassandra, LocalKafka};

static KAFKA: OnceCell<LocalKafka> = OnceCell::const_new();
static CASSANDRA: OnceCell<LocalCassandra> = OnceCell::const_new();

const PREFIX: &str = "ticketing-shared-";

/// The broker of this process.
pub async fn kafka() -> &'static LocalKafka {
    KAFKA
        .get_or_init(|| async {
            LocalKafka::start(&dir().join("kafka"), 0).await.unwrap_or_else(|e| panic!("the shared Kafka broker starts: {e:#}"))
        })
        .await
}

/// The Cassandra node of this process.
pub async fn cassandra() -> &'static LocalCassandra {
    CASSANDRA
        .get_or_init(|| async {
            LocalCassandra::start(&dir().join("cassandra"), 0)
                .await
                .unwrap_or_else(|e| panic!("the shared Cassandra node starts: {e:#}"))
        })
        .await
}

fn dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
            if pid.parse::<u32>().is_ok() && !PathBuf::from("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tmp.join(format!("{PREFIX}{}", std::process::id()))
}
