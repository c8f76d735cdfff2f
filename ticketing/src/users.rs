//! `ticketing users`: erasure of a user (`forget`), and the migration of sign-ups written
//! before personal data was sealed (`migrate`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use platform::peer::PeerKeys;
use platform::vault::{EmailIndex, SubjectKeys};
use secrecy::ExposeSecret;
use users_command::domain::User;
use users_command::personal::PersonalDataVault;

use crate::app::{Codecs, LocalServices, command_side, connect_log, tool_registry};
use crate::settings::Settings;

/// `ticketing users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Erase a user: delete its data key, so its email and password hash are unreadable in
    /// every topic, export and backup, then record the erasure (the email may sign up again).
    Forget {
        /// The user's id (as `GET /api/users/currentuser` shows it).
        id: String,
    },
    /// Rewrite the users topic so no sign-up holds an email or password hash in clear: each
    /// legacy sign-up gets a data key and is sealed, and is keyed by the email's index key.
    /// Stop the users component first; run it again to finish an interrupted migration.
    Migrate(crate::migration::MigrateArgs),
}

/// Runs a `ticketing users` command.
pub async fn run(settings: &Settings, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Forget { id } => forget(settings, &id).await,
        UsersCommand::Migrate(args) => crate::migration::run(settings, args).await.map(|_| ()),
    }
}

async fn forget(settings: &Settings, id: &str) -> anyhow::Result<()> {
    let mut local = LocalServices::default();
    let log = connect_log(settings, &mut local).await?;
    let (registry_url, registry_server) = tool_registry(settings, &log).await?;
    let result = async {
        let codecs = Codecs::new(&log, &registry_url)?;
        let peers = PeerKeys::from_secret(settings.jwt_key.expose_secret().as_bytes());
        // Observing the users group: the erasure is forwarded to the partition's owner when a
        // users service runs, or decided here when none does.
        let users = command_side::<User>("users", &log, codecs.users.clone(), None, &peers).await?;
        tokio::time::timeout(Duration::from_secs(60), users.pipeline().wait_ready())
            .await
            .context("the users topic was not read within 60 s")?;
        let keys = SubjectKeys::open(&log, settings.master_key.clone()).await.context("Failed to read the users' data keys")?;
        let vault = Arc::new(PersonalDataVault::new(keys, EmailIndex::new(&settings.master_key)));
        vault.forget(&users, id).await.with_context(|| format!("Failed to forget user {id}"))?;
        eprintln!("forgot user {id}: its data key is deleted; its email and password hash can no longer be read");
        Ok(())
    }
    .await;
    if let Some(server) = registry_server {
        server.abort();
    }
    local.stop().await?;
    result
}
