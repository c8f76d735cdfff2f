//! Avro datums read by plans compiled once from their writer schema: written straight out as
//! JSON, exactly as [`crate::catalog::AvroJson`] shows their decoded values, without building a
//! `Value` per field ([`JsonTranscoder`]); or read into the values of their top-level fields,
//! named by the schema itself ([`FieldReader`]). Allocating, filling and freeing every field's
//! `Value` was most of what an export of millions of records spent its time on; a field name
//! allocated per field and record, and apache-avro's walk of the schema, a sixth of a replay.
//!
//! The plan covers the types our events use (and the other primitive and complex types except
//! maps, decimals and nanosecond timestamps). A schema it does not cover compiles to `None`,
//! and a datum it cannot read is an error: either way the caller reads the record the general
//! way, which stays the reference (it reports what is wrong, or reads what apache-avro is
//! lenient about).

use apache_avro::Schema;
use apache_avro::schema::UuidSchema;

use crate::catalog::{REDACTED, rfc3339_millis};

/// Why a datum could not be transcoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// The datum ends before its schema says it does.
    #[error("the datum ends early")]
    Truncated,
    /// The datum holds something its schema does not allow.
    #[error("the datum is not valid for its schema: {0}")]
    Invalid(&'static str),
}

/// A record schema compiled to JSON writing: its top-level fields split between two objects
/// (the envelope's and the payload's), some of them redacted.
#[derive(Debug)]
pub struct JsonTranscoder {
    fields: Vec<Field>,
    /// Whether every envelope field comes before every payload field (as our events write
    /// them): then both objects are written straight to one output.
    envelope_first: bool,
}

#[derive(Debug)]
struct Field {
    /// `"name":`, escaped.
    key: Box<[u8]>,
    node: Node,
    envelope: bool,
    redacted: bool,
}

#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Uuid,
    Bytes,
    /// As RFC 3339 text with milliseconds.
    TimestampMillis,
    /// The symbols, as JSON strings.
    Enum(Vec<Box<[u8]>>),
    Fixed(usize),
    Union(Vec<Node>),
    Array(Box<Node>),
    /// Fields as `"name":` and their node.
    Record(Vec<(Box<[u8]>, Node)>),
}

impl JsonTranscoder {
    /// Compiles a record schema; the fields named in `envelope` go to the envelope's object,
    /// those in `redacted` are written as [`crate::catalog::EventTopic::redact`] leaves them.
    /// `None` when the schema uses a type the plan does not cover.
    pub fn compile(schema: &Schema, envelope: &[&str], redacted: &[&str]) -> Option<Self> {
        let Schema::Record(record) = schema else { return None };
        let fields = record
            .fields
            .iter()
            .map(|f| {
                Some(Field {
                    key: object_key(&f.name),
                    node: Node::of(&f.schema)?,
                    envelope: envelope.contains(&f.name.as_str()),
                    redacted: redacted.contains(&f.name.as_str()),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let envelope_first = fields.windows(2).all(|pair| pair[0].envelope || !pair[1].envelope);
        Some(Self { fields, envelope_first })
    }

    /// Reads one datum and appends its envelope's fields to `envelope` and the others to
    /// `payload`, each as one JSON object. On an error the buffers hold partial output.
    pub fn transcode(&self, datum: &[u8], envelope: &mut Vec<u8>, payload: &mut Vec<u8>) -> Result<(), TranscodeError> {
        let mut input = datum;
        envelope.push(b'{');
        payload.push(b'{');
        for field in &self.fields {
            let out = if field.envelope { &mut *envelope } else { &mut *payload };
            if out.last() != Some(&b'{') {
                out.push(b',');
            }
            out.extend_from_slice(&field.key);
            field.node.write(&mut input, out, field.redacted)?;
        }
        envelope.push(b'}');
        payload.push(b'}');
        Ok(())
    }

    /// Reads one datum and appends to `out` its envelope's object, `between`, then its
    /// payload's object, as [`Self::transcode`] writes them. Where the schema puts a payload
    /// field before an envelope field, the objects are put together in `scratch`; otherwise
    /// they are written straight to `out` (copying them was a twentieth of an export). On an
    /// error `out` holds partial output.
    pub fn transcode_joined(
        &self,
        datum: &[u8],
        out: &mut Vec<u8>,
        between: &[u8],
        scratch: &mut (Vec<u8>, Vec<u8>),
    ) -> Result<(), TranscodeError> {
        if !self.envelope_first {
            let (envelope, payload) = scratch;
            envelope.clear();
            payload.clear();
            self.transcode(datum, envelope, payload)?;
            out.extend_from_slice(envelope);
            out.extend_from_slice(between);
            out.extend_from_slice(payload);
            return Ok(());
        }
        let mut input = datum;
        let mut in_payload = false;
        let mut first = true;
        out.push(b'{');
        for field in &self.fields {
            if !field.envelope && !in_payload {
                out.push(b'}');
                out.extend_from_slice(between);
                out.push(b'{');
                (in_payload, first) = (true, true);
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&field.key);
            field.node.write(&mut input, out, field.redacted)?;
        }
        if !in_payload {
            out.push(b'}');
            out.extend_from_slice(between);
            out.push(b'{');
        }
        out.push(b'}');
        Ok(())
    }

    /// Reads one datum as [`Self::transcode`] does, accepting and refusing exactly the same
    /// datums, without writing anything: the check an Avro file export makes before it copies
    /// a datum as written.
    pub fn check(&self, datum: &[u8]) -> Result<(), TranscodeError> {
        let mut input = datum;
        for field in &self.fields {
            field.node.write(&mut input, &mut Nowhere, field.redacted)?;
        }
        Ok(())
    }
}

/// A record schema compiled to reading its top-level fields into the `Value`s apache-avro's
/// reader gives for them, each named by a `&'static str` of the schema (the schema lives as
/// long as the process: see [`crate::evolution::WriterSchemas`]).
///
/// It covers the primitive types, uuids, millisecond timestamps and unions of them: the types
/// our events use. A datum it cannot read is an error, and the caller reads it the general way
/// (apache-avro reads some damaged datums leniently; only the general way says how).
#[derive(Debug)]
pub struct FieldReader {
    fields: Vec<(&'static str, Node)>,
}

impl FieldReader {
    /// Compiles a record schema; `None` when it uses a type the plan does not read into
    /// values.
    pub fn compile(schema: &'static Schema) -> Option<Self> {
        let Schema::Record(record) = schema else { return None };
        let fields = record
            .fields
            .iter()
            .map(|f| Some((f.name.as_str(), Node::of(&f.schema).filter(|_| reads_as_value(&f.schema))?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { fields })
    }

    /// The fields of one datum, in the schema's order (named as [`crate::events::RecordFields`]
    /// keeps them).
    pub fn read(&self, datum: &[u8]) -> Result<Vec<(std::borrow::Cow<'static, str>, apache_avro::types::Value)>, TranscodeError> {
        let mut input = datum;
        // Sized up front: collecting from a fallible iterator grows the vector as it goes.
        let mut fields = Vec::with_capacity(self.fields.len());
        for (name, node) in &self.fields {
            fields.push(((*name).into(), node.value(&mut input)?));
        }
        Ok(fields)
    }
}

/// Whether [`Node::value`] reads a value of `schema` as apache-avro does: the nodes that stand
/// for several Avro types (an `Int` for dates, a `Long` for microseconds) would not tell them
/// apart, and the complex types are not needed.
fn reads_as_value(schema: &Schema) -> bool {
    match schema {
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Float
        | Schema::Double
        | Schema::String
        | Schema::Uuid(UuidSchema::String)
        | Schema::Bytes
        | Schema::TimestampMillis => true,
        Schema::Union(union) => union.variants().iter().all(reads_as_value),
        _ => false,
    }
}

/// Where a datum's walk writes its JSON: a buffer, or [`Nowhere`]. One walk serves both, so a
/// check accepts exactly what a transcoding does.
trait JsonOut {
    fn raw(&mut self, bytes: &[u8]);
    fn push(&mut self, byte: u8);
    fn string(&mut self, text: &str);
    /// A string from the datum's bytes, refused unless UTF-8.
    fn utf8(&mut self, raw: &[u8]) -> Result<(), TranscodeError>;
    fn integer(&mut self, n: i64);
    fn timestamp(&mut self, ms: i64);
    fn float(&mut self, x: f64);
    fn base64(&mut self, raw: &[u8]);
    fn uuid(&mut self, uuid: uuid::Uuid);
}

impl JsonOut for Vec<u8> {
    fn raw(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
    fn string(&mut self, text: &str) {
        write_json_str(text, self);
    }
    fn utf8(&mut self, raw: &[u8]) -> Result<(), TranscodeError> {
        // Most strings are ASCII with nothing to escape: one look at them, no UTF-8 walk.
        if is_plain_ascii(raw) {
            self.reserve(raw.len() + 2);
            Vec::push(self, b'"');
            self.extend_from_slice(raw);
            Vec::push(self, b'"');
        } else {
            write_json_str(std::str::from_utf8(raw).map_err(|_| NOT_UTF8)?, self);
        }
        Ok(())
    }
    fn integer(&mut self, n: i64) {
        self.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
    fn timestamp(&mut self, ms: i64) {
        Vec::push(self, b'"');
        write_rfc3339_millis(ms, self);
        Vec::push(self, b'"');
    }
    fn float(&mut self, x: f64) {
        write_float(x, self);
    }
    fn base64(&mut self, raw: &[u8]) {
        write_base64(raw, self);
    }
    fn uuid(&mut self, uuid: uuid::Uuid) {
        Vec::push(self, b'"');
        self.extend_from_slice(uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).as_bytes());
        Vec::push(self, b'"');
    }
}

/// Discards what a walk writes.
struct Nowhere;

impl JsonOut for Nowhere {
    fn raw(&mut self, _: &[u8]) {}
    fn push(&mut self, _: u8) {}
    fn string(&mut self, _: &str) {}
    fn utf8(&mut self, raw: &[u8]) -> Result<(), TranscodeError> {
        check_utf8(raw)
    }
    fn integer(&mut self, _: i64) {}
    fn timestamp(&mut self, _: i64) {}
    fn float(&mut self, _: f64) {}
    fn base64(&mut self, _: &[u8]) {}
    fn uuid(&mut self, _: uuid::Uuid) {}
}

impl Node {
    fn of(schema: &Schema) -> Option<Self> {
        Some(match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Node::Int,
            Schema::Long | Schema::TimeMicros | Schema::TimestampMicros | Schema::LocalTimestampMicros => Node::Long,
            Schema::TimestampMillis | Schema::LocalTimestampMillis => Node::TimestampMillis,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::String => Node::String,
            Schema::Uuid(UuidSchema::String) => Node::Uuid,
            Schema::Bytes => Node::Bytes,
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Enum(e) => Node::Enum(e.symbols.iter().map(|s| json_string(s).into_boxed_slice()).collect()),
            Schema::Union(union) => Node::Union(union.variants().iter().map(Node::of).collect::<Option<_>>()?),
            Schema::Array(array) => Node::Array(Box::new(Node::of(&array.items)?)),
            Schema::Record(record) => Node::Record(
                record.fields.iter().map(|f| Some((object_key(&f.name), Node::of(&f.schema)?))).collect::<Option<_>>()?,
            ),
            // Maps decode to a hash map (the general way's key order is not the datum's), and
            // the rest are rare enough to be read the general way.
            _ => return None,
        })
    }

    /// Reads this node's value from `input` and writes it; `redacted` writes strings and bytes
    /// as redaction leaves them (through unions), other types as they are.
    fn write(&self, input: &mut &[u8], out: &mut impl JsonOut, redacted: bool) -> Result<(), TranscodeError> {
        match self {
            Node::Null => out.raw(b"null"),
            Node::Boolean => match take(input, 1)?[0] {
                0 => out.raw(b"false"),
                1 => out.raw(b"true"),
                _ => return Err(TranscodeError::Invalid("a boolean is neither 0 nor 1")),
            },
            Node::Int => {
                let n = i32::try_from(long(input)?).map_err(|_| TranscodeError::Invalid("an int out of range"))?;
                out.integer(i64::from(n));
            }
            Node::Long => out.integer(long(input)?),
            Node::TimestampMillis => out.timestamp(long(input)?),
            Node::Float => {
                let x = f32::from_le_bytes(take(input, 4)?.try_into().expect("4 bytes"));
                out.float(f64::from(x));
            }
            Node::Double => out.float(f64::from_le_bytes(take(input, 8)?.try_into().expect("8 bytes"))),
            Node::String => {
                let raw = bytes(input)?;
                if redacted {
                    check_utf8(raw)?;
                    out.string(REDACTED);
                } else {
                    out.utf8(raw)?;
                }
            }
            Node::Uuid => {
                let raw = bytes(input)?;
                if is_canonical_uuid(raw) {
                    // Parsed and formatted again, it would be the same text.
                    out.push(b'"');
                    out.raw(raw);
                    out.push(b'"');
                } else {
                    let text = std::str::from_utf8(raw).map_err(|_| TranscodeError::Invalid("a uuid is not UTF-8"))?;
                    out.uuid(uuid::Uuid::parse_str(text).map_err(|_| TranscodeError::Invalid("not a uuid"))?);
                }
            }
            Node::Bytes => {
                let raw = bytes(input)?;
                out.base64(if redacted { &[] } else { raw });
            }
            Node::Fixed(size) => out.base64(take(input, *size)?),
            Node::Enum(symbols) => {
                let index = usize::try_from(long(input)?).map_err(|_| TranscodeError::Invalid("a negative enum index"))?;
                out.raw(symbols.get(index).ok_or(TranscodeError::Invalid("an enum index out of range"))?);
            }
            Node::Union(variants) => {
                let index = usize::try_from(long(input)?).map_err(|_| TranscodeError::Invalid("a negative union index"))?;
                let variant = variants.get(index).ok_or(TranscodeError::Invalid("a union index out of range"))?;
                variant.write(input, out, redacted)?;
            }
            Node::Array(items) => {
                out.push(b'[');
                let mut first = true;
                loop {
                    let count = long(input)?;
                    if count == 0 {
                        break;
                    }
                    if count < 0 {
                        // A negative count is followed by the block's size in bytes.
                        long(input)?;
                    }
                    for _ in 0..count.unsigned_abs() {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        items.write(input, out, false)?;
                    }
                }
                out.push(b']');
            }
            Node::Record(fields) => {
                out.push(b'{');
                for (i, (key, node)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.raw(key);
                    node.write(input, out, false)?;
                }
                out.push(b'}');
            }
        }
        Ok(())
    }
}

/// Whether `raw` is a uuid as `Uuid::hyphenated` writes it: 36 bytes, lowercase hex digits
/// and hyphens at 8, 13, 18 and 23.
fn is_canonical_uuid(raw: &[u8]) -> bool {
    raw.len() == 36
        && raw.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

impl Node {
    /// Reads this node's value from `input` as apache-avro reads it (for the nodes
    /// [`reads_as_value`] allows).
    fn value(&self, input: &mut &[u8]) -> Result<apache_avro::types::Value, TranscodeError> {
        use apache_avro::types::Value;
        Ok(match self {
            Node::Null => Value::Null,
            Node::Boolean => match take(input, 1)?[0] {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => return Err(TranscodeError::Invalid("a boolean is neither 0 nor 1")),
            },
            Node::Int => Value::Int(i32::try_from(long(input)?).map_err(|_| TranscodeError::Invalid("an int out of range"))?),
            Node::Long => Value::Long(long(input)?),
            Node::TimestampMillis => Value::TimestampMillis(long(input)?),
            Node::Float => Value::Float(f32::from_le_bytes(take(input, 4)?.try_into().expect("4 bytes"))),
            Node::Double => Value::Double(f64::from_le_bytes(take(input, 8)?.try_into().expect("8 bytes"))),
            Node::String => Value::String(
                std::str::from_utf8(bytes(input)?).map_err(|_| TranscodeError::Invalid("a string is not UTF-8"))?.to_string(),
            ),
            Node::Uuid => {
                let text = std::str::from_utf8(bytes(input)?).map_err(|_| TranscodeError::Invalid("a uuid is not UTF-8"))?;
                Value::Uuid(uuid::Uuid::parse_str(text).map_err(|_| TranscodeError::Invalid("not a uuid"))?)
            }
            Node::Bytes => Value::Bytes(bytes(input)?.to_vec()),
            Node::Union(variants) => {
                let index = usize::try_from(long(input)?).map_err(|_| TranscodeError::Invalid("a negative union index"))?;
                let variant = variants.get(index).ok_or(TranscodeError::Invalid("a union index out of range"))?;
                Value::Union(index as u32, Box::new(variant.value(input)?))
            }
            Node::Enum(_) | Node::Fixed(_) | Node::Array(_) | Node::Record(_) => {
                return Err(TranscodeError::Invalid("a type the field reader does not read"));
            }
        })
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], TranscodeError> {
    if input.len() < n {
        return Err(TranscodeError::Truncated);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

/// A zig-zag variable-length long.
fn long(input: &mut &[u8]) -> Result<i64, TranscodeError> {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let (&byte, rest) = input.split_first().ok_or(TranscodeError::Truncated)?;
        *input = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(TranscodeError::Invalid("a variable-length integer longer than 10 bytes"));
        }
    }
    Ok((n >> 1) as i64 ^ -((n & 1) as i64))
}

/// Length-prefixed bytes (strings, bytes).
fn bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], TranscodeError> {
    let len = usize::try_from(long(input)?).map_err(|_| TranscodeError::Invalid("a negative length"))?;
    take(input, len)
}

fn object_key(name: &str) -> Box<[u8]> {
    let mut key = json_string(name);
    key.push(b':');
    key.into_boxed_slice()
}

fn json_string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_json_str(text, &mut out);
    out
}

/// `text` as a JSON string, escaped as serde_json escapes it.
pub fn write_json_str(text: &str, out: &mut Vec<u8>) {
    if needs_escape(text.as_bytes()) {
        serde_json::to_writer(out, text).expect("writing to a Vec cannot fail");
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

const NOT_UTF8: TranscodeError = TranscodeError::Invalid("a string is not UTF-8");

/// Refuses a string that is not UTF-8.
fn check_utf8(raw: &[u8]) -> Result<(), TranscodeError> {
    if !raw.is_ascii() {
        std::str::from_utf8(raw).map_err(|_| NOT_UTF8)?;
    }
    Ok(())
}

/// Whether `bytes` are ASCII with nothing JSON escapes (no control character, `"` or `\`):
/// written as they are, they are a JSON string's content.
fn is_plain_ascii(bytes: &[u8]) -> bool {
    !scan_words(bytes, |x| (x & HIGH_BITS) | escape_bits(x), |b| !b.is_ascii() || byte_needs_escape(b))
}

/// Whether a byte of `bytes` must be escaped in JSON (a control character, `"` or `\`), looked
/// at eight bytes at a time: most strings need none, and a byte at a time was the largest part
/// of an export's time after the reading.
fn needs_escape(bytes: &[u8]) -> bool {
    scan_words(bytes, escape_bits, byte_needs_escape)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether `word` finds something in a run of eight bytes (non-zero) or `byte` in one of the
/// bytes left over.
fn scan_words(bytes: &[u8], word: impl Fn(u64) -> u64, byte: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    chunks.any(|chunk| word(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) != 0)
        || chunks.remainder().iter().any(|&b| byte(b))
}

/// Non-zero when a byte of `x` must be escaped in JSON.
fn escape_bits(x: u64) -> u64 {
    // Non-zero when some byte of `x` is below `n` (n <= 128).
    let has_below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH_BITS;
    has_below(x, 0x20) | has_below(x ^ (ONES * u64::from(b'"')), 1) | has_below(x ^ (ONES * u64::from(b'\\')), 1)
}

fn byte_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn write_float(x: f64, out: &mut Vec<u8>) {
    if x.is_finite() {
        serde_json::to_writer(out, &x).expect("writing to a Vec cannot fail");
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_base64(raw: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    out.push(b'"');
    let start = out.len();
    out.resize(start + raw.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD.encode_slice(raw, &mut out[start..]).expect("sized for base64");
    out.truncate(start + written);
    out.push(b'"');
}

/// Milliseconds since the epoch as [`rfc3339_millis`] writes them (`2026-12-01T10:00:00.000Z`),
/// without formatting machinery for the years 1970 to 9999.
pub fn write_rfc3339_millis(ms: i64, out: &mut Vec<u8>) {
    const END_OF_9999: i64 = 253_402_300_800_000;
    if !(0..END_OF_9999).contains(&ms) {
        out.extend_from_slice(rfc3339_millis(ms).as_bytes());
        return;
    }
    let (days, of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let mut text = *b"0000-00-00T00:00:00.000Z";
    text[..11].copy_from_slice(&date_part(days));
    let (hour, minute, second, milli) =
        (of_day / 3_600_000, of_day / 60_000 % 60, of_day / 1000 % 60, of_day % 1000);
    put_digits(&mut text[11..13], hour);
    put_digits(&mut text[14..16], minute);
    put_digits(&mut text[17..19], second);
    put_digits(&mut text[20..23], milli);
    out.extend_from_slice(&text);
}

/// `YYYY-MM-DDT` of a day since 1970 (0 to the end of 9999). The last day written is kept per
/// thread: an export writes two times per record, nearly all of them of the same few days.
fn date_part(days: i64) -> [u8; 11] {
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 11])> = const { std::cell::Cell::new((-1, [0; 11])) };
    }
    LAST.with(|last| {
        let (day, text) = last.get();
        if day == days {
            return text;
        }
        let (year, month, day) = civil_from_days(days);
        let mut text = *b"0000-00-00T";
        put_digits(&mut text[0..4], year);
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        last.set((days, text));
        text
    })
}

/// `value`'s last `digits.len()` decimal digits, zero-padded, into `digits`.
fn put_digits(digits: &mut [u8], mut value: i64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{AvroFields, event_topics};
    use crate::events::ENVELOPE_FIELDS;
    use apache_avro::types::Value;
    use proptest::prelude::*;

    /// What the general way writes: decode to values, redact, split, serialize.
    fn general(schema: &Schema, datum: &[u8], redacted: &[&str]) -> Option<(String, String)> {
        let mut fields = general_fields(schema, datum)?;
        for (name, value) in fields.iter_mut() {
            if redacted.contains(&name.as_str()) {
                crate::catalog::redact_value(value);
            }
        }
        let envelope = AvroFields(fields.iter().filter(|(n, _)| ENVELOPE_FIELDS.contains(&n.as_str())));
        let payload = AvroFields(fields.iter().filter(|(n, _)| !ENVELOPE_FIELDS.contains(&n.as_str())));
        Some((serde_json::to_string(&envelope).unwrap(), serde_json::to_string(&payload).unwrap()))
    }

    fn encode(schema: &Schema, value: Value) -> Vec<u8> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema).build().unwrap().write_value_to_vec(value).unwrap()
    }

    fn fast(schema: &Schema, datum: &[u8], redacted: &[&str]) -> Result<(String, String), TranscodeError> {
        fast_with(schema, &ENVELOPE_FIELDS, datum, redacted)
    }

    /// The two objects as `transcode` writes them; checks that `transcode_joined` writes them
    /// the same, with what it is given in between.
    fn fast_with(schema: &Schema, envelope_fields: &[&str], datum: &[u8], redacted: &[&str]) -> Result<(String, String), TranscodeError> {
        let transcoder = JsonTranscoder::compile(schema, envelope_fields, redacted).expect("the schema compiles");
        let (mut envelope, mut payload) = (Vec::new(), Vec::new());
        let separate = transcoder.transcode(datum, &mut envelope, &mut payload);
        let mut joined = b"line:".to_vec();
        let together = transcoder.transcode_joined(datum, &mut joined, b"|between|", &mut Default::default());
        assert_eq!(separate, together, "both ways accept the same datums");
        separate?;
        assert_eq!(joined, [&b"line:"[..], &envelope, b"|between|", &payload].concat());
        Ok((String::from_utf8(envelope).unwrap(), String::from_utf8(payload).unwrap()))
    }

    /// Values of `schema`, with the awkward cases (escapes, non-ASCII, extreme numbers and
    /// times) well represented.
    fn values_of(schema: &Schema) -> BoxedStrategy<Value> {
        let text = prop_oneof![
            "[a-z0-9 -]{0,12}",
            any::<String>(),
            Just("quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f} é ☃ 🎫".to_string()),
        ];
        match schema {
            Schema::Null => Just(Value::Null).boxed(),
            Schema::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
            Schema::Int => any::<i32>().prop_map(Value::Int).boxed(),
            Schema::Long => prop_oneof![any::<i64>(), -1000i64..1000].prop_map(Value::Long).boxed(),
            Schema::TimestampMillis => prop_oneof![
                any::<i64>(),
                0i64..4_102_444_800_000,
                -62_167_219_200_000i64..0,
                253_402_300_700_000i64..253_402_300_900_000,
            ]
            .prop_map(Value::TimestampMillis)
            .boxed(),
            Schema::Float => any::<f32>().prop_map(Value::Float).boxed(),
            Schema::Double => any::<f64>().prop_map(Value::Double).boxed(),
            Schema::String => text.prop_map(Value::String).boxed(),
            Schema::Uuid(UuidSchema::String) => any::<u128>().prop_map(|n| Value::Uuid(uuid::Uuid::from_u128(n))).boxed(),
            Schema::Bytes => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes).boxed(),
            Schema::Union(union) => {
                let branches: Vec<BoxedStrategy<Value>> = union
                    .variants()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| values_of(v).prop_map(move |value| Value::Union(i as u32, Box::new(value))).boxed())
                    .collect();
                proptest::strategy::Union::new(branches).boxed()
            }
            Schema::Array(array) => proptest::collection::vec(values_of(&array.items), 0..4).prop_map(Value::Array).boxed(),
            Schema::Record(record) => {
                let fields: Vec<BoxedStrategy<(String, Value)>> = record
                    .fields
                    .iter()
                    .map(|f| {
                        let name = f.name.clone();
                        values_of(&f.schema).prop_map(move |v| (name.clone(), v)).boxed()
                    })
                    .collect();
                fields.prop_map(Value::Record).boxed()
            }
            other => panic!("no generator for {other:?}"),
        }
    }

    fn every_event_schema() -> Vec<(Schema, Vec<&'static str>)> {
        event_topics()
            .iter()
            .flat_map(|topic| {
                topic.schemas.iter().map(move |s| {
                    let redacted = topic.personal_fields.iter().filter(|p| p.record == s.full_name).map(|p| p.field).collect();
                    (Schema::parse_str(s.avsc).unwrap(), redacted)
                })
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_event_is_written_as_the_general_way_writes_it(
            (index, value) in (0..every_event_schema().len()).prop_flat_map(|i| (Just(i), values_of(&every_event_schema()[i].0))),
            redact_personal in any::<bool>(),
        ) {
            let (schema, personal) = &every_event_schema()[index];
            let redacted: Vec<&str> = if redact_personal { personal.clone() } else { Vec::new() };
            let datum = encode(schema, value);
            prop_assert_eq!(fast(schema, &datum, &redacted).unwrap(), general(schema, &datum, &redacted).unwrap());
        }

        #[test]
        fn a_damaged_datum_is_refused_or_read_as_the_general_way_reads_it(
            (index, value) in (0..every_event_schema().len()).prop_flat_map(|i| (Just(i), values_of(&every_event_schema()[i].0))),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let (schema, _) = &every_event_schema()[index];
            let mut datum = encode(schema, value);
            let at = flip.0.index(datum.len());
            datum[at] ^= flip.1;
            datum.truncate(cut.index(datum.len() + 1));
            let transcoder = JsonTranscoder::compile(schema, &ENVELOPE_FIELDS, &[]).expect("the schema compiles");
            let written = fast(schema, &datum, &[]);
            prop_assert_eq!(transcoder.check(&datum), written.as_ref().map(|_| ()).map_err(Clone::clone), "a check accepts what a transcoding accepts");
            if let Ok(written) = written {
                prop_assert_eq!(Some(written), general(schema, &datum, &[]));
            }
            if let Ok(fields) = fast_fields(schema, &datum) {
                prop_assert_eq!(Some(fields), general_fields(schema, &datum), "the field reader too");
            }
        }

        #[test]
        fn times_are_written_as_chrono_writes_them(ms in prop_oneof![any::<i64>(), 0i64..253_402_300_800_000, -100_000i64..100_000]) {
            let mut out = Vec::new();
            write_rfc3339_millis(ms, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), rfc3339_millis(ms));
        }
    }

    /// What apache-avro reads for the fields of `datum`, as `WriterSchemas::decode` reads.
    fn general_fields(schema: &Schema, datum: &[u8]) -> Option<Vec<(String, Value)>> {
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema).build().unwrap();
        match reader.read_value(&mut &datum[..]).ok()? {
            Value::Record(fields) => Some(fields),
            _ => None,
        }
    }

    fn fast_fields(schema: &Schema, datum: &[u8]) -> Result<Vec<(String, Value)>, TranscodeError> {
        let schema: &'static Schema = Box::leak(Box::new(schema.clone()));
        let reader = FieldReader::compile(schema).expect("every event schema compiles");
        Ok(reader.read(datum)?.into_iter().map(|(name, value)| (name.to_string(), value)).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_event_is_read_into_the_values_apache_avro_reads(
            (index, value) in (0..every_event_schema().len()).prop_flat_map(|i| (Just(i), values_of(&every_event_schema()[i].0))),
        ) {
            let (schema, _) = &every_event_schema()[index];
            let datum = encode(schema, value);
            prop_assert_eq!(fast_fields(schema, &datum).unwrap(), general_fields(schema, &datum).unwrap());
        }
    }

    #[test]
    fn the_field_reader_leaves_complex_and_ambiguous_types_to_the_general_way() {
        for field in [r#"{"type":"array","items":"long"}"#, r#"{"type":"int","logicalType":"date"}"#, r#"{"type":"long","logicalType":"timestamp-micros"}"#, r#"["null",{"type":"enum","name":"E","symbols":["A"]}]"#] {
            let schema = Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{{"name":"f","type":{field}}}]}}"#)).unwrap();
            assert!(FieldReader::compile(Box::leak(Box::new(schema))).is_none(), "{field}");
        }
    }

    proptest! {
        #[test]
        fn uuids_in_any_form_are_written_as_uuid_writes_them(n in any::<u128>(), upper in any::<bool>(), braced in any::<bool>()) {
            let id = uuid::Uuid::from_u128(n);
            let mut text = id.hyphenated().to_string();
            if upper {
                text = text.to_uppercase();
            }
            if braced {
                text = format!("{{{text}}}");
            }
            let schema = Schema::parse_str(r#"{"type":"record","name":"U","fields":[{"name":"id","type":{"type":"string","logicalType":"uuid"}}]}"#).unwrap();
            let datum = encode(&schema, Value::Record(vec![("id".into(), Value::String(text))]));
            prop_assert_eq!(fast(&schema, &datum, &[]).unwrap().1, format!(r#"{{"id":"{id}"}}"#));
        }

        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(text in prop_oneof![any::<String>(), "[ -~]{0,40}", "[\\x00-\\x7f]{0,40}"]) {
            let mut out = Vec::new();
            write_json_str(&text, &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&text).unwrap());
            prop_assert_eq!(needs_escape(text.as_bytes()), text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
            prop_assert_eq!(is_plain_ascii(text.as_bytes()), text.bytes().all(|b| b.is_ascii() && b >= 0x20 && b != b'"' && b != b'\\'));
        }
    }

    #[test]
    fn the_types_events_do_not_use_compile_or_are_refused() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"a","type":{"type":"array","items":"double"}},
                {"name":"b","type":{"type":"enum","name":"E","symbols":["X","Y"]}},
                {"name":"c","type":{"type":"fixed","name":"F","size":3}},
                {"name":"d","type":"float"},
                {"name":"e","type":{"type":"record","name":"In","fields":[{"name":"f","type":"boolean"}]}},
                {"name":"g","type":"bytes"}]}"#,
        )
        .unwrap();
        let value = Value::Record(vec![
            ("a".into(), Value::Array(vec![Value::Double(1.5), Value::Double(f64::NAN)])),
            ("b".into(), Value::Enum(1, "Y".into())),
            ("c".into(), Value::Fixed(3, vec![1, 2, 3])),
            ("d".into(), Value::Float(0.25)),
            ("e".into(), Value::Record(vec![("f".into(), Value::Boolean(true))])),
            ("g".into(), Value::Bytes(vec![9, 8])),
        ]);
        let datum = encode(&schema, value);
        assert_eq!(fast(&schema, &datum, &["g"]).unwrap(), general(&schema, &datum, &["g"]).unwrap());
        assert_eq!(fast(&schema, &datum, &[]).unwrap().1, r#"{"a":[1.5,null],"b":"Y","c":"AQID","d":0.25,"e":{"f":true},"g":"CQg="}"#);
        // Envelope fields after payload fields, first, or none at all.
        assert_eq!(
            fast_with(&schema, &["b", "d"], &datum, &[]).unwrap(),
            (r#"{"b":"Y","d":0.25}"#.into(), r#"{"a":[1.5,null],"c":"AQID","e":{"f":true},"g":"CQg="}"#.into())
        );
        assert_eq!(fast_with(&schema, &["a", "b", "c", "d", "e", "g"], &datum, &[]).unwrap().1, "{}");
        assert_eq!(fast_with(&schema, &[], &datum, &[]).unwrap().0, "{}");
        let map = Schema::parse_str(r#"{"type":"record","name":"M","fields":[{"name":"m","type":{"type":"map","values":"long"}}]}"#).unwrap();
        assert!(JsonTranscoder::compile(&map, &[], &[]).is_none());
    }
}
