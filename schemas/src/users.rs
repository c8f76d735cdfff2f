//! Events of the `users` topic, keyed by a keyed hash of the lower-cased email (records
//! written before sealing: by the email itself).

use apache_avro::types::Value;
use platform::codec::CodecError;

use crate::events::{AvroEvent, EventSchema, PersonalField, RecordFields};

/// A user signed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSignedUp {
    /// The user's id.
    pub user_id: String,
    /// Lower-cased email in clear: records written before sealing only, empty since.
    pub email: String,
    /// Argon2id PHC string in clear: records written before sealing only, empty since.
    pub password_hash: String,
    /// The email and password hash sealed with the user's data key (empty in old records).
    pub personal: Vec<u8>,
}

/// The user was erased (their data key deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserForgotten {
    /// The user's id.
    pub user_id: String,
}

/// Every event of the `users` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    /// See [`UserSignedUp`].
    SignedUp(UserSignedUp),
    /// See [`UserForgotten`].
    Forgotten(UserForgotten),
}

static SCHEMAS: [EventSchema; 2] = [
    EventSchema { full_name: "ticketing.users.UserSignedUp", avsc: include_str!("../avro/users/UserSignedUp.avsc") },
    EventSchema { full_name: "ticketing.users.UserForgotten", avsc: include_str!("../avro/users/UserForgotten.avsc") },
];

impl AvroEvent for UserEvent {
    const TOPIC: &'static str = "users";

    fn schemas() -> &'static [EventSchema] {
        &SCHEMAS
    }

    fn personal_fields() -> &'static [PersonalField] {
        &[
            PersonalField { record: "ticketing.users.UserSignedUp", field: "email" },
            PersonalField { record: "ticketing.users.UserSignedUp", field: "password_hash" },
            PersonalField { record: "ticketing.users.UserSignedUp", field: "personal" },
            // Records written before sealing carry the email as aggregate id, and in the
            // command id of a sign-up sent with an idempotency key.
            PersonalField { record: "ticketing.users.UserSignedUp", field: "aggregate_id" },
            PersonalField { record: "ticketing.users.UserSignedUp", field: "command_id" },
        ]
    }

    const KEY_IS_PERSONAL: bool = true;

    fn schema(&self) -> &'static EventSchema {
        match self {
            UserEvent::SignedUp(_) => &SCHEMAS[0],
            UserEvent::Forgotten(_) => &SCHEMAS[1],
        }
    }

    fn payload_fields(&self) -> Vec<(&'static str, Value)> {
        match self {
            UserEvent::SignedUp(e) => vec![
                ("user_id", Value::String(e.user_id.clone())),
                ("email", Value::String(e.email.clone())),
                ("password_hash", Value::String(e.password_hash.clone())),
                ("personal", Value::Bytes(e.personal.clone())),
            ],
            UserEvent::Forgotten(e) => vec![("user_id", Value::String(e.user_id.clone()))],
        }
    }

    fn from_record(full_name: &str, fields: &RecordFields) -> Result<Self, CodecError> {
        match full_name {
            "ticketing.users.UserSignedUp" => Ok(UserEvent::SignedUp(UserSignedUp {
                user_id: fields.string("user_id")?,
                email: fields.string("email")?,
                password_hash: fields.string("password_hash")?,
                personal: fields.bytes("personal")?,
            })),
            "ticketing.users.UserForgotten" => Ok(UserEvent::Forgotten(UserForgotten { user_id: fields.string("user_id")? })),
            other => Err(CodecError::Undecodable(format!("unknown event type {other}"))),
        }
    }
}
