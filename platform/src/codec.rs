//! The port through which the kernel turns events into log records and back.

use async_trait::async_trait;

use crate::aggregate::Envelope;

/// Failures of encoding or decoding an event record.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The schema registry could not be reached.
    #[error("The schema registry is unavailable: {0}")]
    RegistryUnavailable(String),
    /// The bytes are not a valid record of a known event type (a poison record).
    #[error("Undecodable event record: {0}")]
    Undecodable(String),
    /// The event could not be encoded with its schema.
    #[error("Event could not be encoded: {0}")]
    Unencodable(String),
}

/// Encodes and decodes the events of one topic.
#[async_trait]
pub trait EventCodec<E>: Send + Sync + 'static {
    /// The topic these events live in (full name, namespace included).
    fn topic(&self) -> &str;

    /// The `event_type` header value of an event.
    fn event_type(&self, event: &E) -> &'static str;

    /// Encodes an event with its envelope into a record value.
    async fn encode(&self, envelope: &Envelope<E>) -> Result<Vec<u8>, CodecError>;

    /// Decodes a record value.
    async fn decode(&self, bytes: &[u8]) -> Result<Envelope<E>, CodecError>;
}

/// Runs `decode` until the schema registry answers: a reader that skipped a record while the
/// registry was down would diverge from the others. Any other error is returned.
pub async fn waiting_for_registry<T, F, Fut>(mut decode: F) -> Result<T, CodecError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CodecError>>,
{
    loop {
        match decode().await {
            Err(CodecError::RegistryUnavailable(reason)) => {
                tracing::warn!(message = "Waiting for the schema registry.", %reason);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}
