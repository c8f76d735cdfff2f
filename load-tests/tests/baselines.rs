//! The raw baselines against a real local broker and a real fjall keyspace (small counts:
//! these check that the measurements measure, not how fast they are).

use load_tests::baseline;
use platform::log::LogConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_baselines_produce_and_read_back_every_record() {
    let broker = platform::local::shared::kafka().await;
    let mut log = LogConfig::new(broker.bootstrap_servers(), "baseline");
    log.partitions = 3;
    let topic = log.topic("raw");

    let produced = baseline::kafka_produce(&log, &topic, 2_000, 500).await.expect("produce baseline");
    assert_eq!(produced.operations, 2_000);
    let latency = produced.latency.expect("per-record latency");
    assert_eq!(latency.count, 2_000);
    assert!(produced.per_second > 0.0 && latency.p50_ms <= latency.p99_ms);

    // The warm-up record plus the measured ones: the consumer must find every one.
    let consumed = baseline::kafka_consume(&log, &topic, 2_001).await.expect("consume baseline");
    assert_eq!(consumed.operations, 2_001);
}

#[tokio::test]
async fn the_store_baseline_reads_back_every_row_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let figures = baseline::fjall(dir.path(), 5_000, 10_000).await.expect("fjall baseline");
    assert_eq!(figures.writes.operations, 5_000);
    assert_eq!(figures.point_reads.operations, 10_000);
    assert!(figures.point_reads.per_second > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cql_baseline_reads_back_every_row_it_wrote() {
    let node = platform::local::shared::cassandra().await;
    let figures = baseline::cql(&node.uri(), "Cassandra", 2_000, 4_000, 64).await.expect("CQL baseline");
    assert_eq!(figures.writes.operations, 2_000);
    assert_eq!(figures.point_reads.operations, 4_000);
    assert!(figures.point_reads.per_second > 0.0);
}
