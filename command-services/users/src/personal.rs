//! The users' personal data at the edge of the users service: emails stand as their index
//! key, sign-ups seal the email and password hash with a fresh data key, sign-ins open them,
//! and forgetting a user deletes its key, then records the erasure.

use std::time::Duration;

use platform::command::{CommandError, CommandRequest};
use platform::forwarding::CommandService;
use platform::vault::{EmailIndex, KeyLookup, SubjectKeys, VaultError};

use crate::domain::{Email, PersonalData, StoredPersonalData, User, UserCommand, UserError};

/// How long a sign-in waits for a key another instance wrote a moment ago.
const KEY_WAIT: Duration = Duration::from_secs(1);

/// A user's personal data as far as this instance can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Readable.
    Data(PersonalData),
    /// Erased, or never signed up.
    Gone,
}

/// Why forgetting a user failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// No user has this id.
    #[error("no user has the id {0}")]
    UnknownUser(String),
    /// The key topic failed (nothing was erased, or the key was and the erasure record was not:
    /// retrying finishes it).
    #[error("the data key could not be deleted")]
    Keys(#[source] VaultError),
    /// The user signed up before sealing: its data is in clear in the log, which no key
    /// deletion can erase; `ticketing users migrate` seals it first.
    #[error("user {0} signed up before personal data was sealed: run `ticketing users migrate` first")]
    NotMigrated(String),
    /// Recording the erasure failed; the key is gone already, so the data is unreadable.
    #[error("the erasure could not be recorded: {0}")]
    Record(String),
}

/// Keys and the email index of the users service.
pub struct PersonalDataVault {
    keys: SubjectKeys,
    index: EmailIndex,
}

impl PersonalDataVault {
    /// The vault over a deployment's key topic and email index.
    pub fn new(keys: SubjectKeys, index: EmailIndex) -> Self {
        Self { keys, index }
    }

    /// The users aggregate (and record key) of an email.
    pub fn aggregate_id(&self, email: &Email) -> String {
        self.index.key_of(email.as_str())
    }

    /// Seals a new user's personal data with a data key of its own, kept in the key topic first.
    pub async fn seal_new(&self, user_id: &str, data: &PersonalData) -> Result<Vec<u8>, VaultError> {
        let key = self.keys.create(user_id).await?;
        Ok(key.seal(user_id, &data.to_bytes()))
    }

    /// Deletes a data key made for a sign-up that did not happen (refused, or the repeat of an
    /// earlier one); a failure only leaves an unused key behind.
    pub async fn discard(&self, user_id: &str) {
        if let Err(error) = self.keys.erase(user_id).await {
            tracing::warn!(message = "Failed to delete an unused data key.", %user_id, %error);
        }
    }

    /// The personal data of a user's state.
    pub async fn open(&self, user: &User) -> Opened {
        match &user.personal {
            StoredPersonalData::Clear(data) if user.exists => Opened::Data(data.clone()),
            StoredPersonalData::Sealed(sealed) if user.exists => match self.keys.lookup(&user.user_id, KEY_WAIT).await {
                KeyLookup::Active(key) => key
                    .open(&user.user_id, sealed)
                    .ok()
                    .and_then(|bytes| PersonalData::from_bytes(&bytes))
                    .map_or(Opened::Gone, Opened::Data),
                KeyLookup::Erased | KeyLookup::Unknown => Opened::Gone,
            },
            _ => Opened::Gone,
        }
    }

    /// Forgets the user `user_id`: deletes its data key (from then on its email and password
    /// hash are unreadable everywhere), then records `UserForgotten` so the email may sign up
    /// again. Running it again finishes a forget that stopped half-way.
    pub async fn forget(&self, users: &CommandService<User>, user_id: &str) -> Result<(), ForgetError> {
        let found = users.pipeline().select(|user| user.user_id == user_id);
        let Some((aggregate_id, user)) = found.into_iter().next() else {
            return Err(ForgetError::UnknownUser(user_id.to_string()));
        };
        if matches!(user.personal, StoredPersonalData::Clear(_)) {
            return Err(ForgetError::NotMigrated(user_id.to_string()));
        }
        self.keys.erase(user_id).await.map_err(ForgetError::Keys)?;
        let request = CommandRequest::from_client(&aggregate_id, format!("forget:{user_id}"), UserCommand::Forget {
            user_id: user_id.to_string(),
        });
        match users.execute(request).await {
            Ok(_) => Ok(()),
            Err(CommandError::Rejected(UserError::UnknownUser)) => Err(ForgetError::UnknownUser(user_id.to_string())),
            Err(other) => Err(ForgetError::Record(format!("{other:?}"))),
        }
    }
}
