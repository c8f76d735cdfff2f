use std::time::{Duration, Instant};
use platform::broker::LocalBroker;
use platform::log::{LogConfig, LogProducer, TopicReader, TopicSpec, ensure_topics};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = LocalBroker::start(dir.path(), 0).await?;
    let mut log = LogConfig::new(broker.bootstrap_servers(), "probe");
    log.idempotence = false;
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("C_")) {
        log.extra.push((k[2..].replace('_', "."), v));
    }
    log.fetch_wait_ms = std::env::var("WAIT").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let parts: i32 = std::env::var("PARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let topic = log.topic("t");
    ensure_topics(&log, &[TopicSpec { name: topic.clone(), partitions: parts, compacted: false }]).await?;
    let producer = LogProducer::new(&log)?;
    let others: usize = std::env::var("OTHERS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    for o in 0..others {
        let name = log.topic(&format!("other{o}"));
        ensure_topics(&log, &[TopicSpec { name: name.clone(), partitions: parts, compacted: false }]).await?;
        let r = TopicReader::from_beginning(&log, &name)?;
        tokio::spawn(async move { loop { let _ = r.next().await; } });
    }
    let reader = TopicReader::from_beginning(&log, &topic)?;
    producer.append(&topic, b"warm", b"x", &[]).await?;
    reader.next().await?;
    let mut echoes = Vec::new();
    for i in 0..30 {
        let t = Instant::now();
        producer.append(&topic, format!("k{i}").as_bytes(), b"x", &[]).await?;
        let acked = t.elapsed();
        reader.next().await?;
        let _ = acked;
        echoes.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    echoes.sort_by(f64::total_cmp);
    println!("echo median {:.1} ms max {:.1} ms", echoes[15], echoes[29]);
    broker.stop().await?;
    Ok(())
}
