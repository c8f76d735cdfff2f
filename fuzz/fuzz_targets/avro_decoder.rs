//! Hostile record values on every topic: the Confluent wire format (magic byte, schema id),
//! then the Avro datum read with the writer's schema, evolved to the current one, and turned
//! into a domain event. Nothing may panic, hang or allocate without bound; a value either
//! decodes or is refused with a `CodecError`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use platform::codec::EventCodec;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schemas::codec::AvroCodec;
use schemas::events::AvroEvent;

/// Every topic's codec, knowing each current schema of the topic under ids 1, 2, … (so no
/// decode ever asks a registry).
struct Codecs {
    users: AvroCodec<schemas::users::UserEvent>,
    tickets: AvroCodec<schemas::tickets::TicketEvent>,
    orders: AvroCodec<schemas::orders::OrderEvent>,
    payments: AvroCodec<schemas::payments::PaymentEvent>,
}

fn codec<E: AvroEvent>() -> (AvroCodec<E>, u32) {
    // Never contacted: every id the target uses is remembered below.
    let codec = AvroCodec::<E>::new(format!("fuzz.{}", E::TOPIC), SrSettings::new("http://127.0.0.1:9".into()));
    let mut id = 0;
    for schema in E::schemas() {
        id += 1;
        codec.writer_schemas().remember(id, schema.avsc.to_string()).expect("our schemas parse");
    }
    (codec, id)
}

static CODECS: LazyLock<(Codecs, [u32; 4])> = LazyLock::new(|| {
    let (users, u) = codec();
    let (tickets, t) = codec();
    let (orders, o) = codec();
    let (payments, p) = codec();
    (Codecs { users, tickets, orders, payments }, [u, t, o, p])
});

fn decode<E: AvroEvent + Send + 'static>(codec: &AvroCodec<E>, known: u32, bytes: &[u8]) {
    // The header as written, refused or not; then, so the datum is exercised too, the same
    // bytes under an id the reader knows.
    let _ = schemas::evolution::wire_header(bytes);
    let mut value = bytes.to_vec();
    if value.len() >= 5 {
        value[0] = 0;
        let id = 1 + u32::from_be_bytes([value[1], value[2], value[3], value[4]]) % known;
        value[1..5].copy_from_slice(&id.to_be_bytes());
    }
    let _ = futures::executor::block_on(codec.decode(&value));
}

fuzz_target!(|data: &[u8]| {
    schemas::codec::limit_allocations();
    let Some((topic, bytes)) = data.split_first() else { return };
    let (codecs, known) = &*CODECS;
    match topic % 4 {
        0 => decode(&codecs.users, known[0], bytes),
        1 => decode(&codecs.tickets, known[1], bytes),
        2 => decode(&codecs.orders, known[2], bytes),
        _ => decode(&codecs.payments, known[3], bytes),
    }
});
