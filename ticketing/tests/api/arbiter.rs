use platform::aggregate::{Envelope, EventMetadata};
use platform::codec::EventCodec;
use platform::log::LogProducer;
use reqwest::{Method, StatusCode};
use schemas::tickets::{TicketEvent, TicketUpdated};
use serde_json::json;

use crate::helpers::{Deployment, TestBroker, ticket_codec};

both_stores! {
async fn duplicate_and_gapped_events_written_into_the_topic_change_nothing() {
    let broker = TestBroker::start().await;
    let deployment = Deployment::new(&broker).await;
    let app = deployment.spawn().await;
    let created = app.create_ticket("alice", "concert", 20.0).await;
    let id = created.id();
    let before = app.get_after(&format!("/api/tickets/{id}"), &created).await.body;

    // A stale writer re-uses version 1, another skips to version 5.
    let log = deployment.log();
    let codec = ticket_codec(&log, &app.registry_url());
    let producer = LogProducer::new(&log).unwrap();
    for (version, title) in [(1, "zombie"), (5, "from the future"), (1, "zombie again")] {
        let envelope = Envelope {
            metadata: EventMetadata {
                event_id: uuid::Uuid::new_v4(),
                aggregate_id: id.clone(),
                aggregate_version: version,
                command_id: uuid::Uuid::new_v4().to_string(),
                command_event_index: 0,
                command_event_count: 1,
                occurred_at: chrono::Utc::now().timestamp_millis(),
                correlation_id: "test".into(),
                causation_id: None,
            },
            event: TicketEvent::Updated(TicketUpdated { title: title.into(), price_minor: 1, currency: "USD".into(), user_id: "mallory".into() }),
        };
        let bytes = codec.encode(&envelope).await.unwrap();
        producer.append(codec.topic(), id.as_bytes(), &bytes, &[("event_type", b"TicketUpdated")]).await.unwrap();
    }

    // A legitimate update after the junk: the command side still sees version 0 (API numbering).
    let updated = app
        .send(
            Method::PUT,
            &format!("/api/tickets/{id}"),
            Some("alice"),
            Some(json!({"title": "real update", "price": 21})),
            &[("if-match", "0".into())],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.body["version"], 1);
    let after = app.get_after(&format!("/api/tickets/{id}"), &updated).await.body;
    assert_eq!(after["title"], "real update");
    assert_eq!(after["userId"], before["userId"]);
    assert_eq!(after["version"], 1);
    let listed = app.get_after("/api/tickets", &updated).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["title"], "real update");
    app.stop().await;
}
}
