//! Events of the `users` topic, keyed by lower-cased email.

use apache_avro::types::Value;
use platform::codec::CodecError;

use crate::events::{AvroEvent, EventSchema, PersonalField, RecordFields};

/// A user signed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSignedUp {
    /// The user's id.
    pub user_id: String,
    /// Lower-cased email (also the aggregate id).
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// Every event of the `users` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    /// See [`UserSignedUp`].
    SignedUp(UserSignedUp),
}

static SCHEMAS: [EventSchema; 1] = [EventSchema {
    full_name: "ticketing.users.UserSignedUp",
    avsc: include_str!("../avro/users/UserSignedUp.avsc"),
}];

impl AvroEvent for UserEvent {
    const TOPIC: &'static str = "users";

    fn schemas() -> &'static [EventSchema] {
        &SCHEMAS
    }

    fn personal_fields() -> &'static [PersonalField] {
        &[
            PersonalField { record: "ticketing.users.UserSignedUp", field: "email" },
            PersonalField { record: "ticketing.users.UserSignedUp", field: "password_hash" },
            // The envelope's aggregate id is the email too, and so is part of the command id
            // of a sign-up sent with an idempotency key.
            PersonalField { record: "ticketing.users.UserSignedUp", field: "aggregate_id" },
            PersonalField { record: "ticketing.users.UserSignedUp", field: "command_id" },
        ]
    }

    const KEY_IS_PERSONAL: bool = true;

    fn schema(&self) -> &'static EventSchema {
        &SCHEMAS[0]
    }

    fn payload_fields(&self) -> Vec<(&'static str, Value)> {
        let UserEvent::SignedUp(e) = self;
        vec![
            ("user_id", Value::String(e.user_id.clone())),
            ("email", Value::String(e.email.clone())),
            ("password_hash", Value::String(e.password_hash.clone())),
        ]
    }

    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError> {
        match full_name {
            "ticketing.users.UserSignedUp" => Ok(UserEvent::SignedUp(UserSignedUp {
                user_id: fields.string("user_id")?,
                email: fields.string("email")?,
                password_hash: fields.string("password_hash")?,
            })),
            other => Err(CodecError::Undecodable(format!("unknown event type {other}"))),
        }
    }
}
