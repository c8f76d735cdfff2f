//! Every event of every topic read back from its datum, by the compiled field reader and by the
//! general (apache-avro) reader, gives the event that was written.

use apache_avro::Schema;
use apache_avro::types::Value;
use platform::aggregate::EventMetadata;
use schemas::events::{AvroEvent, RecordFields, metadata_fields, metadata_from};
use schemas::orders::*;
use schemas::payments::*;
use schemas::tickets::*;
use schemas::transcode::FieldReader;
use schemas::users::*;

fn metadata(n: i64) -> EventMetadata {
    EventMetadata {
        event_id: uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788 + n as u128),
        aggregate_id: format!("aggregate-{n}"),
        aggregate_version: n + 1,
        command_id: format!("command \"{n}\""),
        command_event_index: (n % 2) as i32,
        command_event_count: 2,
        occurred_at: 1_796_119_200_123 + n,
        correlation_id: format!("correlation-é-{n}"),
        causation_id: (n % 2 == 0).then(|| format!("cause-{n}")),
    }
}

/// The datum of `event` with `metadata`, as the codec writes it.
fn datum<E: AvroEvent>(metadata: &EventMetadata, event: &E) -> (&'static Schema, Vec<u8>) {
    let schema: &'static Schema = Box::leak(Box::new(Schema::parse_str(event.schema().avsc).unwrap()));
    let mut fields = metadata_fields(metadata);
    fields.extend(event.payload_fields());
    let record = Value::Record(fields.into_iter().map(|(name, value)| (name.to_string(), value)).collect());
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(schema).build().unwrap().write_value_to_vec(record).unwrap();
    (schema, datum)
}

fn reads_back<E: AvroEvent + PartialEq + std::fmt::Debug>(events: Vec<E>) {
    for (n, event) in events.into_iter().enumerate() {
        let metadata = metadata(n as i64);
        let (schema, datum) = datum(&metadata, &event);
        let full_name = event.schema().full_name;
        let compiled = RecordFields::from(FieldReader::compile(schema).expect("event schemas compile").read(&datum).unwrap());
        let general = match apache_avro::reader::datum::GenericDatumReader::builder(schema).build().unwrap().read_value(&mut &datum[..]).unwrap() {
            Value::Record(fields) => RecordFields::from(fields),
            other => panic!("{other:?}"),
        };
        for (way, fields) in [("compiled", compiled), ("general", general)] {
            assert_eq!(metadata_from(&fields).unwrap(), metadata, "{full_name}, {way}");
            assert_eq!(E::from_record(full_name, &fields).unwrap(), event, "{full_name}, {way}");
        }
    }
}

#[test]
fn every_event_reads_back_as_written_both_ways() {
    let s = |text: &str| text.to_string();
    reads_back(vec![
        TicketEvent::Created(TicketCreated { title: s("A \"show\" ☃"), price_minor: 1_999, currency: s("EUR"), user_id: s("u-1") }),
        TicketEvent::Updated(TicketUpdated { title: s("B"), price_minor: 0, currency: s("JPY"), user_id: s("u-1") }),
        TicketEvent::Reserved(TicketReserved { order_id: s("o-1"), expires_at: 1_796_119_900_000 }),
        TicketEvent::Released(TicketReleased { order_id: s("o-1") }),
        TicketEvent::Sold(TicketSold { order_id: s("o-2") }),
    ]);
    reads_back(vec![
        OrderEvent::Created(OrderCreated {
            user_id: s("u-2"),
            ticket_id: s("t-1"),
            ticket_title: s("C"),
            ticket_price_minor: i64::MAX,
            ticket_currency: s("USD"),
            expires_at: -1,
        }),
        OrderEvent::Cancelled(OrderCancelled { ticket_id: s("t-1"), reason: s("expired") }),
        OrderEvent::Completed(OrderCompleted { ticket_id: s("t-1"), payment_id: s("p-1") }),
        OrderEvent::AwaitingPayment(OrderAwaitingPayment { payment_id: s("p-1") }),
        OrderEvent::PaymentDeclined(OrderPaymentDeclined { payment_id: s("p-1"), reason: s("card declined") }),
    ]);
    reads_back(vec![
        PaymentEvent::Created(PaymentCreated { order_id: s("o-3"), charge_id: s("ch-1"), amount_cents: 1, currency: s("USD") }),
        PaymentEvent::Started(PaymentStarted {
            order_id: s("o-3"),
            attempt: i32::MAX,
            amount_cents: 5,
            currency: s("GBP"),
            idempotency_key: s("k"),
            token: s("tok_visa"),
        }),
        PaymentEvent::Declined(PaymentDeclined { order_id: s("o-3"), attempt: 2, reason: s("") }),
        PaymentEvent::Refunded(PaymentRefunded { order_id: s("o-3"), charge_id: s("ch-1"), refund_id: s("re-1"), reason: s("late") }),
    ]);
    reads_back(vec![
        UserEvent::SignedUp(UserSignedUp { user_id: s("u-3"), email: s(""), password_hash: s(""), personal: vec![0, 255, 7] }),
        UserEvent::Forgotten(UserForgotten { user_id: s("u-3") }),
    ]);
}
