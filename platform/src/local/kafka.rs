//! A single-node Apache Kafka broker in KRaft combined mode (broker and controller in one JVM).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::LocalKafka;
use super::process::run_java;


/// The JVM's flags: a bounded heap, low-pause GC.
const JVM_FLAGS: &[&str] = &[
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

const LOG4J2: &str = "\
status = warn
appender.file.type = Console
appender.file.name = STDOUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = info
";

/// A user of a broker that requires SASL/SCRAM-SHA-256 authentication.
#[derive(Debug, Clone)]
pub struct ScramUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// SCRAM mechanism of [`LocalKafka::start_scram`].
pub const SCRAM_MECHANISM: &str = "SCRAM-SHA-256";

impl LocalKafka {
    /// Starts a broker on `127.0.0.1:port` (0 picks a free port) with its data in `data_dir`,
    /// formatting the storage on first use, and waits until it answers metadata requests.
    /// The controller listens on a port remembered in the data directory.
    pub async fn start(data_dir: &Path, port: u16) -> anyhow::Result<Self> {
        Self::start_with(data_dir, port, None).await
    }

    /// Like [`LocalKafka::start`], but its client listener is `SASL_PLAINTEXT` and accepts only
    /// the given users, by SCRAM-SHA-256 (their credentials are written into the metadata log
    /// when the storage is formatted). The first user is the broker's own, between its
    /// listeners.
    pub async fn start_scram(data_dir: &Path, port: u16, users: &[ScramUser]) -> anyhow::Result<Self> {
        anyhow::ensure!(!users.is_empty(), "a SCRAM broker needs at least its own user");
        Self::start_with(data_dir, port, Some(users)).await
    }

    async fn start_with(data_dir: &Path, port: u16, scram: Option<&[ScramUser]>) -> anyhow::Result<Self> {
        let site = Self::site(data_dir, port).await?;
        let data_dir = &site.data_dir;
        let controller_port = super::remembered_port(data_dir, "kafka-controller")?;
        let log_dirs = data_dir.join("log");
        let properties = data_dir.join("server.properties");
        let mut config = server_properties(site.port, controller_port, &log_dirs);
        if let Some(users) = scram {
            config.push_str(&scram_properties(site.port, controller_port, &users[0]));
        }
        std::fs::write(&properties, config).with_context(|| format!("Failed to write {}", properties.display()))?;
        let log4j = data_dir.join("log4j2.properties");
        std::fs::write(&log4j, LOG4J2)?;

        let mut base: Vec<OsString> = JVM_FLAGS.iter().map(OsString::from).collect();
        base.push(format!("-Dlog4j2.configurationFile=file:{}", log4j.display()).into());
        base.push("-cp".into());
        base.push(site.classpath.clone().into());

        if !log_dirs.join("meta.properties").exists() {
            let mut format = base.clone();
            format.extend(["kafka.tools.StorageTool", "format", "--ignore-formatted", "-t"].map(OsString::from));
            format.push(cluster_id().into());
            format.push("-c".into());
            format.push(properties.clone().into());
            for user in scram.unwrap_or_default() {
                format.push("--add-scram".into());
                format.push(format!("{SCRAM_MECHANISM}=[name={},password={}]", user.name, user.password).into());
            }
            run_java("Kafka's storage format", format, data_dir).await?;
        }

        let mut args = base;
        args.push("kafka.Kafka".into());
        args.push(properties.into());
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", format!("127.0.0.1:{}", site.port));
        if let Some(users) = scram {
            client
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanism", SCRAM_MECHANISM)
                .set("sasl.username", &users[0].name)
                .set("sasl.password", &users[0].password);
        }
        // The port opens before the broker has registered with its controller.
        Self::launch(site, args, || answers_metadata(client.clone())).await
    }

    /// `host:port` to give clients as bootstrap servers.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }
}

/// Whether a broker lists itself in a metadata answer to a client of this configuration.
async fn answers_metadata(client: ClientConfig) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client.create()?;
        let brokers = consumer.fetch_metadata(None, Duration::from_secs(2))?.brokers().len();
        if brokers == 0 {
            bail!("no broker registered yet");
        }
        Ok(())
    })
    .await?
}

/// A KRaft cluster id: 16 random bytes, base64url without padding (what `random-uuid` prints).
/// Like Kafka's own `Uuid.randomUuid`, never one that starts with `-`: the storage tool would
/// take it for an option (one start in 64 failed so).
fn cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn server_properties(port: u16, controller_port: u16, log_dirs: &Path) -> String {
    format!(
        "\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={log_dirs}
# One node: every internal topic has one replica, and fewer partitions than a cluster's 50.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# A restarted node registers again only once its previous incarnation's session has expired
# (9 s by default): after a kill -9 that was most of a restart.
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
num.partitions=1
# The log is the source of truth: it never expires.
log.retention.ms=-1
",
        log_dirs = log_dirs.display()
    )
}

/// Overrides of [`server_properties`] (later keys win) for a SASL/SCRAM client listener. The
/// controller listener stays plaintext on loopback: only the broker talks to it.
fn scram_properties(port: u16, controller_port: u16, broker: &ScramUser) -> String {
    format!(
        "\
listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{name}\" password=\"{password}\";
",
        name = broker.name,
        password = broker.password,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cluster_id_is_never_taken_for_an_option() {
        for _ in 0..10_000 {
            let id = super::cluster_id();
            assert!(!id.starts_with('-') && id.len() == 22, "{id}");
        }
    }
}
