//! Raw baselines: what the log and the store do on their own on this machine, measured with
//! their client libraries directly, with no marketplace code in the way.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use platform::log::{LogConfig, TopicSpec, ensure_topics};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::cpu::{CpuClock, CpuUse};
use crate::recorder::{Latencies, LatencySummary};

/// A rate measured over a count of operations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    /// Operations done.
    pub operations: u64,
    /// Seconds they took.
    pub seconds: f64,
    /// Operations per second.
    pub per_second: f64,
    /// Latency of one operation, when measured one by one.
    pub latency: Option<LatencySummary>,
    /// What the whole machine spent meanwhile, where measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

impl Throughput {
    /// `operations` over `elapsed`.
    pub fn new(operations: u64, elapsed: Duration, latency: Option<LatencySummary>) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self { operations, seconds, per_second: operations as f64 / seconds.max(1e-9), latency, cpu: None }
    }

    /// The same, with what the machine spent meanwhile.
    pub fn with_cpu(self, cpu: Option<CpuUse>) -> Self {
        Self { cpu, ..self }
    }

    /// Core-microseconds the machine spent per operation, where measured.
    pub fn cpu_micros_per_operation(&self) -> Option<f64> {
        self.cpu.map(|cpu| cpu.micros_per_operation(self.operations))
    }
}

/// Size of a raw record value: about an encoded ticket event with its envelope.
pub const RECORD_BYTES: usize = 200;
/// Size of a raw store value: about a ticket row as JSON.
pub const ROW_BYTES: usize = 220;
/// Distinct keys, as if that many aggregates wrote.
const KEYS: u64 = 10_000;

/// Keyed produce with the command path's producer settings (`acks=all`, the murmur2
/// partitioner, `linger.ms=1`; idempotence as the log config says), `window` records in
/// flight. Latency is per record, from send to acknowledgement.
pub async fn kafka_produce(config: &LogConfig, topic: &str, records: u64, window: usize) -> anyhow::Result<Throughput> {
    ensure_topics(config, &[TopicSpec { name: topic.to_string(), partitions: config.partitions, compacted: false, config: Vec::new() }])
        .await
        .context("Failed to create the baseline topic")?;
    let mut client = config.producer_config();
    client.set("linger.ms", "1").set("message.timeout.ms", "30000");
    let producer: FutureProducer = client.create()?;
    let payload = vec![b'x'; RECORD_BYTES];
    let keys: Vec<String> = (0..KEYS).map(|k| format!("aggregate-{k}")).collect();
    // One record first, so connecting is not measured.
    producer
        .send(FutureRecord::to(topic).key("warm-up").payload(&payload), Timeout::After(Duration::from_secs(30)))
        .await
        .map_err(|(e, _)| e)
        .context("Failed to produce to the baseline topic")?;

    let mut latencies = Latencies::default();
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut failed = 0u64;
    while sent < records || !pending.is_empty() {
        while sent < records && pending.len() < window {
            let record = FutureRecord::to(topic).key(&keys[(sent % KEYS) as usize]).payload(&payload);
            let send = producer.send(record, Timeout::After(Duration::from_secs(30)));
            let at = Instant::now();
            pending.push(async move { (send.await, at) });
            sent += 1;
        }
        if let Some((result, at)) = pending.next().await {
            match result {
                Ok(_) => latencies.record(at.elapsed()),
                Err(_) => failed += 1,
            }
        }
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(failed == 0, "{failed} of {records} baseline records were not acknowledged");
    Ok(Throughput::new(records, elapsed, Some(latencies.summary())))
}

/// Reads every record of `topic` from the beginning with a plain consumer (assigned, not
/// subscribed; the system's consumer settings), polled back to back and touching nothing
/// but each payload's length: the fastest a reader of this topic goes on this machine.
pub async fn kafka_consume(config: &LogConfig, topic: &str, expected: u64) -> anyhow::Result<Throughput> {
    let config = config.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        // The system's consumer settings (`fetch.queue.backoff.ms` above all: librdkafka's
        // default of 1 s stalled this loop for most of each second, and its figure swung
        // between 0.7 and 2M/s from run to run).
        let mut client = config.consumer_config();
        client
            .set("group.id", format!("baseline-{}", uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // As the system's readers.
            .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string());
        let consumer: BaseConsumer = client.create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions as i32 {
            assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let started = Instant::now();
        let cpu = CpuClock::start();
        let mut read = 0u64;
        let mut bytes = 0usize;
        let give_up = Instant::now() + Duration::from_secs(600);
        while read < expected {
            anyhow::ensure!(Instant::now() < give_up, "read {read} of {expected} records in 10 minutes");
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message?;
                bytes += message.payload().map(<[u8]>::len).unwrap_or(0);
                read += 1;
            }
        }
        let elapsed = started.elapsed();
        let cpu = cpu.and_then(|c| c.used());
        std::hint::black_box(bytes);
        Ok(Throughput::new(read, elapsed, None).with_cpu(cpu))
    })
    .await?
}

/// What any audit of a read model of `cells` cells does on the embedded store's engine besides
/// reading the log, with fjall alone: write the replay's rows into a scratch namespace,
/// [`platform::store::FLUSH_BATCH`] to a batch as replays hand them to the store, then read it and the live namespace through
/// (here the same cells twice). Each cell is written once and nothing is read before it is
/// written: a floor under an audit's store work, not a model of it. The CPU is the machine's.
pub async fn fjall_audit_floor(dir: &Path, cells: u64) -> anyhow::Result<Throughput> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let keyspace = fjall::Config::new(&dir).open().context("Failed to open a fjall keyspace")?;
        let partition = keyspace.open_partition("scratch", fjall::PartitionCreateOptions::default())?;
        let value = vec![b'v'; ROW_BYTES];
        let cpu = CpuClock::start();
        let started = Instant::now();
        let per_batch = platform::store::FLUSH_BATCH as u64;
        for first in (0..cells).step_by(per_batch as usize) {
            let mut batch = keyspace.batch();
            for i in first..(first + per_batch).min(cells) {
                batch.insert(&partition, cell_key(i), value.as_slice());
            }
            batch.commit()?;
        }
        let (mut read, mut digest) = (0u64, 0u64);
        for _ in 0..2 {
            for item in partition.iter() {
                let (key, value) = item?;
                digest = digest.wrapping_add(key.len() as u64 + u64::from(value.first().copied().unwrap_or(0)));
                read += 1;
            }
        }
        let elapsed = started.elapsed();
        std::hint::black_box(digest);
        anyhow::ensure!(read == 2 * cells, "fjall read {read} of {} cells back", 2 * cells);
        Ok(Throughput::new(cells, elapsed, None).with_cpu(cpu.and_then(|c| c.used())))
    })
    .await?
}

/// Store baselines: writes (one thread, as one projector writes) and point reads (one thread
/// per core, as the query API reads).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreBaseline {
    /// Which engine.
    pub engine: String,
    /// Writes.
    pub writes: Throughput,
    /// Point reads of existing keys.
    pub point_reads: Throughput,
}

fn cell_key(i: u64) -> String {
    format!("tickets\u{0}{:036}\u{0}row", i)
}

/// fjall directly, configured as the embedded store configures it (journal written to the OS
/// on every write, no fsync per write).
pub async fn fjall(dir: &Path, rows: u64, reads: u64) -> anyhow::Result<StoreBaseline> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let keyspace = fjall::Config::new(&dir).open().context("Failed to open a fjall keyspace")?;
        let partition = keyspace.open_partition("cells", fjall::PartitionCreateOptions::default())?;
        let value = vec![b'v'; ROW_BYTES];
        let started = Instant::now();
        for i in 0..rows {
            partition.insert(cell_key(i), &value)?;
        }
        let writes = Throughput::new(rows, started.elapsed(), None);

        let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1) as u64;
        let partition = Arc::new(partition);
        let started = Instant::now();
        let found: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let partition = partition.clone();
                    scope.spawn(move || {
                        let mut rng = fastrand::Rng::with_seed(t);
                        let share = reads / threads + u64::from(t < reads % threads);
                        (0..share)
                            .filter(|_| matches!(partition.get(cell_key(rng.u64(..rows))), Ok(Some(_))))
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("reader thread")).sum()
        });
        let point_reads = Throughput::new(found, started.elapsed(), None);
        anyhow::ensure!(found == reads, "fjall lost rows: found {found} of {reads}");
        Ok(StoreBaseline { engine: "fjall (embedded)".into(), writes, point_reads })
    })
    .await?
}

/// A CQL server directly (Cassandra or ScyllaDB): prepared inserts and selects,
/// `concurrency` in flight; `engine` names it in the report.
pub async fn cql(uri: &str, engine: &str, rows: u64, reads: u64, concurrency: usize) -> anyhow::Result<StoreBaseline> {
    use scylla::client::session_builder::SessionBuilder;
    let nodes: Vec<&str> = uri.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let mut builder = SessionBuilder::new().known_nodes(&nodes);
    if let (Ok(user), Ok(password)) = (std::env::var("SCYLLA_USERNAME"), std::env::var("SCYLLA_PASSWORD")) {
        builder = builder.user(user, password);
    }
    let session = builder.build().await.with_context(|| format!("Failed to connect to the CQL server at {uri}"))?;
    session
        .query_unpaged(
            "CREATE KEYSPACE IF NOT EXISTS bench_raw WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            (),
        )
        .await?;
    session
        .query_unpaged("CREATE TABLE IF NOT EXISTS bench_raw.cells (p text, c text, v blob, PRIMARY KEY (p, c))", ())
        .await?;
    let insert = session.prepare("INSERT INTO bench_raw.cells (p, c, v) VALUES (?, ?, ?)").await?;
    let select = session.prepare("SELECT v FROM bench_raw.cells WHERE p = ? AND c = ?").await?;
    let value = vec![b'v'; ROW_BYTES];

    let started = Instant::now();
    let mut written = futures::stream::iter(0..rows)
        .map(|i| {
            let (session, insert, value) = (&session, &insert, &value);
            async move { session.execute_unpaged(insert, (format!("{i:036}"), "row", value.as_slice())).await }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = written.next().await {
        result.context("A baseline insert failed")?;
    }
    drop(written);
    let writes = Throughput::new(rows, started.elapsed(), None);

    let started = Instant::now();
    let mut read = futures::stream::iter(0..reads)
        .map(|i| {
            let (session, select) = (&session, &select);
            async move { session.execute_unpaged(select, (format!("{:036}", (i * 7919) % rows), "row")).await }
        })
        .buffer_unordered(concurrency);
    let mut found = 0;
    while let Some(result) = read.next().await {
        let rows = result.context("A baseline select failed")?.into_rows_result().context("A baseline select returned no rows")?;
        found += rows.rows_num() as u64;
    }
    drop(read);
    let point_reads = Throughput::new(reads, started.elapsed(), None);
    anyhow::ensure!(found == reads, "the CQL server lost rows: found {found} of {reads}");
    Ok(StoreBaseline { engine: engine.into(), writes, point_reads })
}

/// Bare HTTP on this machine: an axum server on loopback answering every `GET` with the same
/// ticket-sized JSON (no store, no middleware), driven by the load generator's client with
/// `workers` connections back to back for `duration`.
pub async fn http(workers: usize, duration: Duration) -> anyhow::Result<Throughput> {
    const BODY: &str = r#"{"id":"3f1c2a8e-5b7d-4e0f-9a6c-1d2e3f4a5b6c","title":"concert","price":20,"userId":"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0","version":1}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/api/tickets/x", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/api/tickets/{id}",
        axum::routing::get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], BODY) }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder().pool_max_idle_per_host(workers).tcp_nodelay(true).build()?;
    let mut latencies = Latencies::default();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let per_worker = futures::future::join_all((0..workers).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut latencies = Latencies::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = client.get(&url).send().await?;
                response.bytes().await?;
                latencies.record(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }
    }))
    .await;
    let elapsed = started.elapsed();
    server.abort();
    for worker in per_worker {
        latencies.add(&worker?);
    }
    Ok(Throughput::new(latencies.count(), elapsed, Some(latencies.summary())))
}
