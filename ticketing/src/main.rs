use clap::{Parser, Subcommand};
use ticketing::app::{Application, Component};
use ticketing::settings::{Settings, SettingsArgs};

/// Ticket marketplace on an event log. Configured by flags or their environment variables
/// (see README); `KAFKA_*` settings come from the environment only.
#[derive(Parser)]
#[command(name = "ticketing", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run every component in one process behind one port (starts a local broker when
    /// KAFKA_BOOTSTRAP_SERVERS is unset).
    Up,
    /// Run one component, or several in one process behind one port.
    Serve {
        /// Which components.
        #[arg(value_enum, required = true, num_args = 1..)]
        components: Vec<Component>,
    },
    /// Create the topics, the registry topic and the store's schema, then exit (for install
    /// hooks).
    Init,
    /// Replay the log into a fresh namespace of a read model, then switch reads to it; or,
    /// with --as-of, into a snapshot namespace served read-only.
    Rebuild(ticketing::rebuild::RebuildArgs),
    /// Replay a read model into a scratch namespace and compare it row by row with the live
    /// one; exits with status 3 when they differ.
    Audit(ticketing::rebuild::AuditArgs),
    /// Export event history as JSON lines or Avro files, by topic, window, type and aggregate.
    Export(ticketing::export::ExportArgs),
    /// One aggregate's state at a time or version, with the events that led there.
    History(ticketing::history::HistoryArgs),
    /// Erase a user (crypto-shredding), or migrate sign-ups written before sealing.
    Users {
        #[command(subcommand)]
        command: ticketing::users::UsersCommand,
    },
    /// List, inspect, replay or skip the records readers parked in the dead-letter topic.
    DeadLetters {
        #[command(subcommand)]
        command: ticketing::dead_letters::DeadLetterCommand,
    },
}

/// mimalloc rather than the system's allocator: replays and exports allocate a few values per
/// field of every record on every core, and glibc's malloc spent a third of an export's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = platform::telemetry::init_tracing();
    let cli = Cli::parse();
    let settings = Settings::from_args(cli.settings)?;
    match cli.command {
        Command::Up => {
            let app = Application::build(settings, &Component::ALL).await?;
            let mut addr = app.addr();
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            tracing::info!(message = "Up: the web client and the API are served here.", url = %format!("http://{addr}/"));
            app.run_until_stopped().await
        }
        Command::Serve { components } => Application::build(settings, &components).await?.run_until_stopped().await,
        Command::Init => ticketing::app::init(&settings).await,
        Command::Rebuild(args) => ticketing::rebuild::run(&settings, args).await.map(|_| ()),
        Command::Audit(args) => {
            let report = ticketing::rebuild::audit(&settings, args).await?;
            if report.difference_count > 0 {
                std::process::exit(ticketing::rebuild::AUDIT_DIFFERS_EXIT_CODE);
            }
            Ok(())
        }
        Command::Export(args) => ticketing::export::run(&settings, args).await.map(|_| ()),
        Command::Users { command } => ticketing::users::run(&settings, command).await,
        Command::History(args) => ticketing::history::run(&settings, args).await.map(|_| ()),
        Command::DeadLetters { command } => ticketing::dead_letters::run(&settings, command).await,
    }
}
