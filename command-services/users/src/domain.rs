//! The User aggregate, keyed by lower-cased email: email uniqueness is a single-partition
//! decision of the log, never a read-model lookup.

use platform::aggregate::Aggregate;
use platform::http::ErrorEntry;
use schemas::users::{UserEvent, UserSignedUp};
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

/// What a client may ask of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserCommand {
    /// Create the user (the password is hashed before the command is built).
    SignUp {
        /// New user id.
        user_id: String,
        /// The address (also the aggregate id).
        email: Email,
        /// Argon2id PHC string.
        password_hash: String,
    },
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum UserError {
    /// Someone signed up with this email before.
    #[error("Email in use")]
    EmailInUse,
}

/// The state of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// False until signed up.
    pub exists: bool,
    /// User id.
    pub user_id: String,
    /// Lower-cased email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(&self, command: &UserCommand, _now: i64) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::SignUp { user_id, email, password_hash } => {
                if self.exists {
                    return Err(UserError::EmailInUse);
                }
                Ok(vec![UserEvent::SignedUp(UserSignedUp {
                    user_id: user_id.clone(),
                    email: email.as_str().to_string(),
                    password_hash: password_hash.clone(),
                })])
            }
        }
    }

    fn evolve(self, event: &UserEvent) -> Self {
        match event {
            UserEvent::SignedUp(e) => User {
                exists: true,
                user_id: e.user_id.clone(),
                email: e.email.clone(),
                password_hash: e.password_hash.clone(),
            },
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

    #[test]
    fn an_email_signs_up_once() {
        let signed_up = UserEvent::SignedUp(UserSignedUp {
            user_id: "u1".into(),
            email: "a@b.co".into(),
            password_hash: "h".into(),
        });
        given::<User>(vec![])
            .when(UserCommand::SignUp { user_id: "u1".into(), email: email("A@B.co"), password_hash: "h".into() })
            .then_expect_events(vec![signed_up.clone()]);
        given::<User>(vec![signed_up])
            .when(UserCommand::SignUp { user_id: "u2".into(), email: email("a@b.co"), password_hash: "x".into() })
            .then_expect_error(UserError::EmailInUse);
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
