//! A single Apache Cassandra 5.0 node: the CQL server that stands in for ScyllaDB on one
//! machine (same protocol, same `scylla` driver).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use scylla::client::session_builder::SessionBuilder;

use super::LocalCassandra;


/// Cassandra's own `conf/jvm17-server.options` (module access for Java 17, G1, Netty), with a
/// heap bounded for a shared machine.
const JVM_FLAGS: &[&str] = &[
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:MaxGCPauseMillis=300",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Djava.net.preferIPv4Stack=true",
    "-Dcassandra-foreground=yes",
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.initial_token=0",
];

const LOGBACK: &str = r#"<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level %date{ISO8601} %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra.service.CassandraDaemon" level="INFO"/>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"#;

impl LocalCassandra {
    /// Starts a node whose CQL port is `127.0.0.1:port` (0 picks a free port) with its data in
    /// `data_dir`, and waits until it answers a CQL query. The storage (gossip) port is
    /// remembered in the data directory.
    pub async fn start(data_dir: &Path, port: u16) -> anyhow::Result<Self> {
        let site = Self::site(data_dir, port).await?;
        let data_dir = &site.data_dir;
        let storage_port = super::remembered_port(data_dir, "cassandra-storage")?;
        let config = data_dir.join("cassandra.yaml");
        std::fs::write(&config, cassandra_yaml(site.port, storage_port, data_dir))
            .with_context(|| format!("Failed to write {}", config.display()))?;
        let logback = data_dir.join("logback.xml");
        std::fs::write(&logback, LOGBACK)?;
        // JNA unpacks its native library into the temporary directory; keep it ours.
        let tmp = data_dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;

        let mut args: Vec<OsString> = JVM_FLAGS.iter().map(OsString::from).collect();
        args.push(format!("-Dcassandra.config=file://{}", config.display()).into());
        args.push(format!("-Dlogback.configurationFile=file://{}", logback.display()).into());
        args.push(format!("-Dcassandra.storagedir={}", data_dir.display()).into());
        args.push(format!("-Dcassandra.logdir={}", data_dir.display()).into());
        args.push(format!("-Djava.io.tmpdir={}", tmp.display()).into());
        args.push("-cp".into());
        args.push(site.classpath.clone().into());
        args.push("org.apache.cassandra.service.CassandraDaemon".into());
        let uri = format!("127.0.0.1:{}", site.port);
        Self::launch(site, args, || answers_cql(uri.clone())).await
    }

    /// `host:port` of the CQL port, as `SCYLLA_URI` takes it.
    pub fn uri(&self) -> String {
        self.addr.to_string()
    }
}

/// Whether a node at `uri` answers a CQL query.
async fn answers_cql(uri: String) -> anyhow::Result<()> {
    let session = SessionBuilder::new().known_node(uri).connection_timeout(Duration::from_secs(2)).build().await?;
    session.query_unpaged("SELECT release_version FROM system.local", &[]).await?;
    Ok(())
}

fn cassandra_yaml(port: u16, storage_port: u16, dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "\
cluster_name: ticketing-local
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"127.0.0.1:{storage_port}\"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage_port}
native_transport_port: {port}
start_native_transport: true
data_file_directories: [{dir}/data]
commitlog_directory: {dir}/commitlog
saved_caches_directory: {dir}/saved_caches
hints_directory: {dir}/hints
cdc_raw_directory: {dir}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
memtable_allocation_type: heap_buffers
concurrent_compactors: 1
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
"
    )
}
