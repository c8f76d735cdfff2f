//! The User aggregate, keyed by the email's index key (a keyed hash of the lower-cased email):
//! email uniqueness is a single-partition decision of the log, never a read-model lookup. The
//! email and password hash travel sealed with the user's data key; the aggregate keeps them
//! sealed and never sees a key.

use platform::aggregate::Aggregate;
use platform::http::ErrorEntry;
use schemas::users::{UserEvent, UserForgotten, UserSignedUp};
use serde::{Deserialize, Serialize};

/// A valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    /// Validates the `email` field: one `@`, a non-empty local part, a dotted domain, no spaces.
    pub fn parse(value: Option<&serde_json::Value>) -> Result<Self, ErrorEntry> {
        let invalid = || ErrorEntry::field("email", "Email must be valid");
        let email = value.and_then(serde_json::Value::as_str).map(str::trim).ok_or_else(invalid)?;
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let valid = !local.is_empty()
            && local.len() <= 64
            && email.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid { Ok(Self(email.to_lowercase())) } else { Err(invalid()) }
    }

    /// The lower-cased address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sign-up password: trimmed, 4 to 20 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl NewPassword {
    /// Validates the `password` field of a sign-up.
    pub fn parse(value: Option<&serde_json::Value>) -> Result<Self, ErrorEntry> {
        match value.and_then(serde_json::Value::as_str).map(str::trim) {
            Some(p) if (4..=20).contains(&p.chars().count()) => Ok(Self(p.to_string())),
            _ => Err(ErrorEntry::field("password", "Password must be between 4 and 20 characters")),
        }
    }

    /// The password text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The personal data of a user, as sealed into the `personal` field of its sign-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    /// Lower-cased email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl PersonalData {
    /// The bytes that get sealed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("two strings serialise")
    }

    /// The personal data from opened bytes, `None` if they are not what [`Self::to_bytes`] made.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What may be asked of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserCommand {
    /// Create the user (the aggregate id is the email's index key).
    SignUp {
        /// New user id (the data subject whose key sealed `personal`).
        user_id: String,
        /// [`PersonalData`], sealed with the new user's data key.
        personal: Vec<u8>,
    },
    /// Erase the user (after its data key was deleted).
    Forget {
        /// The user id, which must be this aggregate's.
        user_id: String,
    },
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum UserError {
    /// Someone signed up with this email before.
    #[error("Email in use")]
    EmailInUse,
    /// No such user under this aggregate.
    #[error("Not Found")]
    UnknownUser,
}

/// What a user's personal data is, as the log holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredPersonalData {
    /// Not signed up.
    #[default]
    None,
    /// Sealed with the user's data key.
    Sealed(Vec<u8>),
    /// In clear: a sign-up written before sealing, not migrated yet.
    Clear(PersonalData),
    /// Erased.
    Forgotten,
}

/// The state of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// True once signed up, false again once forgotten (the email may sign up anew).
    pub exists: bool,
    /// User id.
    pub user_id: String,
    /// The email and password hash.
    pub personal: StoredPersonalData,
}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(&self, command: &UserCommand, _now: i64) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::SignUp { user_id, personal } => {
                if self.exists {
                    return Err(UserError::EmailInUse);
                }
                Ok(vec![UserEvent::SignedUp(UserSignedUp {
                    user_id: user_id.clone(),
                    email: String::new(),
                    password_hash: String::new(),
                    personal: personal.clone(),
                })])
            }
            UserCommand::Forget { user_id } => {
                if self.user_id != *user_id {
                    return Err(UserError::UnknownUser);
                }
                if !self.exists {
                    // Forgotten already: a repeat changes nothing.
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::Forgotten(UserForgotten { user_id: user_id.clone() })])
            }
        }
    }

    fn evolve(self, event: &UserEvent) -> Self {
        match event {
            UserEvent::SignedUp(e) => User {
                exists: true,
                user_id: e.user_id.clone(),
                personal: if e.personal.is_empty() {
                    StoredPersonalData::Clear(PersonalData { email: e.email.clone(), password_hash: e.password_hash.clone() })
                } else {
                    StoredPersonalData::Sealed(e.personal.clone())
                },
            },
            UserEvent::Forgotten(_) => User { exists: false, personal: StoredPersonalData::Forgotten, ..self },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::aggregate::testing::given;
    use serde_json::json;

    fn email(s: &str) -> Email {
        Email::parse(Some(&json!(s))).unwrap()
    }

    fn signed_up(user_id: &str) -> UserEvent {
        UserEvent::SignedUp(UserSignedUp {
            user_id: user_id.into(),
            email: String::new(),
            password_hash: String::new(),
            personal: b"sealed".to_vec(),
        })
    }

    #[test]
    fn an_email_signs_up_once() {
        given::<User>(vec![])
            .when(UserCommand::SignUp { user_id: "u1".into(), personal: b"sealed".to_vec() })
            .then_expect_events(vec![signed_up("u1")]);
        given::<User>(vec![signed_up("u1")])
            .when(UserCommand::SignUp { user_id: "u2".into(), personal: b"other".to_vec() })
            .then_expect_error(UserError::EmailInUse);
    }

    #[test]
    fn a_forgotten_user_is_erased_once_and_the_email_may_sign_up_again() {
        let forgotten = UserEvent::Forgotten(UserForgotten { user_id: "u1".into() });
        given::<User>(vec![signed_up("u1")])
            .when(UserCommand::Forget { user_id: "u1".into() })
            .then_expect_events(vec![forgotten.clone()]);
        given::<User>(vec![signed_up("u1")])
            .when(UserCommand::Forget { user_id: "u9".into() })
            .then_expect_error(UserError::UnknownUser);
        given::<User>(vec![])
            .when(UserCommand::Forget { user_id: "u1".into() })
            .then_expect_error(UserError::UnknownUser);
        given::<User>(vec![signed_up("u1"), forgotten.clone()])
            .when(UserCommand::Forget { user_id: "u1".into() })
            .then_expect_events(vec![]);
        given::<User>(vec![signed_up("u1"), forgotten.clone()])
            .when(UserCommand::SignUp { user_id: "u2".into(), personal: b"sealed".to_vec() })
            .then_expect_events(vec![signed_up("u2")]);
        let state = [signed_up("u1"), forgotten].iter().fold(User::default(), |s, e| s.evolve(e));
        assert_eq!(state.personal, StoredPersonalData::Forgotten, "nothing personal is kept");
    }

    #[test]
    fn a_sign_up_written_before_sealing_keeps_its_clear_values_until_migrated() {
        let legacy = UserEvent::SignedUp(UserSignedUp {
            user_id: "u1".into(),
            email: "a@b.co".into(),
            password_hash: "h".into(),
            personal: Vec::new(),
        });
        let state = User::default().evolve(&legacy);
        assert_eq!(
            state.personal,
            StoredPersonalData::Clear(PersonalData { email: "a@b.co".into(), password_hash: "h".into() })
        );
    }

    #[test]
    fn emails_are_validated_and_lower_cased() {
        assert_eq!(email(" Alice@Example.COM ").as_str(), "alice@example.com");
        for bad in ["", "alice", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@.co", "a@b..co"] {
            assert!(Email::parse(Some(&json!(bad))).is_err(), "{bad}");
        }
        assert!(Email::parse(Some(&json!(5))).is_err());
    }

    #[test]
    fn passwords_are_trimmed_and_4_to_20_characters() {
        assert!(NewPassword::parse(Some(&json!("abc"))).is_err());
        assert!(NewPassword::parse(Some(&json!("  abc  "))).is_err());
        assert!(NewPassword::parse(Some(&json!("abcd"))).is_ok());
        assert!(NewPassword::parse(Some(&json!("a".repeat(21)))).is_err());
        assert!(NewPassword::parse(None).is_err());
    }
}
