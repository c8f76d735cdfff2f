//! The local Tansu broker as the launcher starts it.

use std::time::Duration;

use platform::broker::LocalBroker;
use platform::log::{LogConfig, LogProducer, TopicReader, TopicSpec, ensure_topics};

/// Every record of ours carries headers; Tansu 0.6 without the launcher's header index scans
/// all headers per record served, and a reader of a log this size stalls for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_gets_through_a_log_of_records_with_headers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = LocalBroker::start(dir.path(), 0).await.expect("the broker starts");
    let mut log = LogConfig::new(broker.bootstrap_servers(), "headers");
    log.idempotence = false;
    let topic = log.topic("events");
    ensure_topics(&log, &[TopicSpec { name: topic.clone(), partitions: 3, compacted: false }]).await.unwrap();

    let producer = LogProducer::new(&log).unwrap();
    let records = 20_000;
    let appends = (0..records).map(|i| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            let key = format!("aggregate-{}", i % 500);
            producer.append(&topic, key.as_bytes(), b"payload", &[("event_type", b"Happened".as_slice())]).await
        }
    });
    for result in futures::future::join_all(appends).await {
        result.expect("append acknowledged");
    }

    let reader = TopicReader::from_beginning(&log, &topic).unwrap();
    let read_all = async {
        for _ in 0..records {
            let record = reader.next().await.expect("a record");
            assert_eq!(record.header("event_type"), Some(b"Happened".as_slice()));
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read_all)
        .await
        .expect("all 20,000 records read back (Tansu scans headers without the launcher's index)");
    broker.stop().await.unwrap();
}
