//! The Ticket aggregate: pure `decide` and `evolve`.

use platform::aggregate::Aggregate;
use serde::{Deserialize, Serialize};
use platform::http::ErrorEntry;
use platform::money::Currency;
use schemas::tickets::{TicketCreated, TicketEvent, TicketReleased, TicketReserved, TicketSold, TicketUpdated};

/// A validated, non-empty title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Title(String);

impl Title {
    /// Longest title accepted, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Validates the `title` field of a request.
    pub fn parse(value: Option<&serde_json::Value>) -> Result<Self, ErrorEntry> {
        match value.and_then(serde_json::Value::as_str).map(str::trim) {
            Some(title) if !title.is_empty() && title.chars().count() <= Self::MAX_CHARS => {
                Ok(Self(title.to_string()))
            }
            Some(title) if !title.is_empty() => {
                Err(ErrorEntry::field("title", "Title must be at most 200 characters"))
            }
            _ => Err(ErrorEntry::field("title", "Title is required")),
        }
    }

    /// The title text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated price: greater than 0, with no more decimals than its currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    minor: i64,
    currency: Currency,
}

impl Price {
    /// Highest price accepted, in major units of any currency.
    pub const MAX_MAJOR: i64 = 10_000_000;

    /// Validates the `price` and `currency` fields of a request: a number > 0 with at most as
    /// many decimals as the currency's minor unit, as a JSON number or a string of decimal
    /// digits (the reference client sends `"12.50"`); the currency an ISO 4217 code, USD when
    /// absent (the reference API has no currency).
    pub fn parse(
        price: Option<&serde_json::Value>,
        currency: Option<&serde_json::Value>,
    ) -> Result<Self, ErrorEntry> {
        let currency = match currency {
            None | Some(serde_json::Value::Null) => Currency::USD,
            Some(serde_json::Value::String(code)) => Currency::parse(code).ok_or_else(unknown_currency)?,
            Some(_) => return Err(unknown_currency()),
        };
        let invalid = || ErrorEntry::field("price", "Price must be greater than 0");
        let amount = match price {
            Some(serde_json::Value::Number(number)) => number.as_f64(),
            Some(serde_json::Value::String(text)) => Self::numeric_string(text),
            _ => None,
        }
        .ok_or_else(invalid)?;
        if !amount.is_finite() || amount <= 0.0 {
            return Err(invalid());
        }
        let scale = currency.minor_per_major() as f64;
        let minor = (amount * scale).round();
        if (minor - amount * scale).abs() > 1e-6 {
            let message = match currency.exponent() {
                0 => format!("Price must be a whole number of {currency}"),
                2 => "Price must have at most two decimals".to_string(),
                n => format!("Price must have at most {n} decimals"),
            };
            return Err(ErrorEntry::field("price", &message));
        }
        if minor > (Self::MAX_MAJOR * currency.minor_per_major()) as f64 {
            return Err(ErrorEntry::field("price", &format!("Price must be at most {}", Self::MAX_MAJOR)));
        }
        Ok(Self { minor: minor as i64, currency })
    }

    /// Digits with at most one decimal point, nothing else (no sign, exponent or spaces inside).
    fn numeric_string(text: &str) -> Option<f64> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
            return None;
        }
        text.parse().ok()
    }

    /// A price of `minor` units of `currency` (must be > 0 and within the bound).
    pub fn from_minor(minor: i64, currency: Currency) -> Option<Self> {
        (minor > 0 && minor <= Self::MAX_MAJOR * currency.minor_per_major()).then_some(Self { minor, currency })
    }

    /// The amount in the currency's minor unit.
    pub fn minor(self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }
}

fn unknown_currency() -> ErrorEntry {
    ErrorEntry::field("currency", "Currency must be an ISO 4217 code such as USD or EUR")
}

/// What a client may ask of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketCommand {
    /// Put a new ticket up for sale.
    CreateTicket {
        /// Title.
        title: Title,
        /// Price.
        price: Price,
        /// The seller.
        user_id: String,
    },
    /// Change title and price.
    UpdateTicket {
        /// New title.
        title: Title,
        /// New price.
        price: Price,
        /// Who asks.
        user_id: String,
    },
    /// Reserve the ticket for an order for `hold_ms` from the decision (a hold past its end no
    /// longer holds).
    ReserveTicket {
        /// The ordering order.
        order_id: String,
        /// How long the hold lasts, ms.
        hold_ms: i64,
    },
    /// End an order's reservation without a sale (a no-op unless that order holds it).
    ReleaseTicket {
        /// The order whose reservation ends.
        order_id: String,
    },
    /// Sell the ticket to the order holding its reservation.
    SellTicket {
        /// The paid order.
        order_id: String,
    },
}

/// Why a ticket command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TicketError {
    /// A create for an id that already exists (not a repeat of the same command).
    #[error("Ticket already exists")]
    AlreadyExists,
    /// No such ticket.
    #[error("Not Found")]
    NotFound,
    /// Only the seller may edit a ticket.
    #[error("Not authorized")]
    NotOwner,
    /// A reserved or sold ticket cannot be edited.
    #[error("Cannot edit a reserved ticket")]
    Reserved,
    /// Another order holds the ticket, or it is sold.
    #[error("Ticket is already reserved")]
    AlreadyReserved,
    /// Selling to an order that does not hold the reservation.
    #[error("The ticket is not reserved by this order")]
    NotReservedByOrder,
}

/// An order's hold on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The holding order.
    pub order_id: String,
    /// End of the hold, ms since the epoch.
    pub expires_at: i64,
}

/// The state of one ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// False until the ticket is created.
    pub exists: bool,
    /// Title.
    pub title: String,
    /// Price in the minor unit of `currency`.
    pub price_minor: i64,
    /// The price's currency.
    pub currency: Currency,
    /// The seller.
    pub user_id: String,
    /// The order holding the ticket, if any.
    pub reservation: Option<Reservation>,
    /// The order that bought the ticket, once sold.
    pub sold_to: Option<String>,
}

impl Ticket {
    /// The order the ticket is reserved by or sold to (the API's `orderId`).
    pub fn order_id(&self) -> Option<&str> {
        self.sold_to.as_deref().or(self.reservation.as_ref().map(|r| r.order_id.as_str()))
    }

    /// The hold that has not lapsed at `now`, if any.
    pub fn active_hold(&self, now: i64) -> Option<&Reservation> {
        self.reservation.as_ref().filter(|held| held.expires_at > now)
    }

    /// The release of a hold that lapsed before `now`: whoever acts on the ticket next ends it,
    /// so an expired hold never blocks the ticket.
    fn release_lapsed(&self, now: i64) -> Option<TicketEvent> {
        self.reservation
            .as_ref()
            .filter(|held| held.expires_at <= now)
            .map(|held| TicketEvent::Released(TicketReleased { order_id: held.order_id.clone() }))
    }
}

impl Aggregate for Ticket {
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;

    fn decide(&self, command: &TicketCommand, now: i64) -> Result<Vec<TicketEvent>, TicketError> {
        match command {
            TicketCommand::CreateTicket { title, price, user_id } => {
                if self.exists {
                    return Err(TicketError::AlreadyExists);
                }
                Ok(vec![TicketEvent::Created(TicketCreated {
                    title: title.as_str().to_string(),
                    price_minor: price.minor(),
                    currency: price.currency().code().to_string(),
                    user_id: user_id.clone(),
                })])
            }
            TicketCommand::UpdateTicket { title, price, user_id } => {
                if !self.exists {
                    return Err(TicketError::NotFound);
                }
                if self.sold_to.is_some() || self.active_hold(now).is_some() {
                    return Err(TicketError::Reserved);
                }
                if &self.user_id != user_id {
                    return Err(TicketError::NotOwner);
                }
                let mut events: Vec<TicketEvent> = self.release_lapsed(now).into_iter().collect();
                events.push(TicketEvent::Updated(TicketUpdated {
                    title: title.as_str().to_string(),
                    price_minor: price.minor(),
                    currency: price.currency().code().to_string(),
                    user_id: self.user_id.clone(),
                }));
                Ok(events)
            }
            TicketCommand::ReserveTicket { order_id, hold_ms } => {
                if !self.exists {
                    return Err(TicketError::NotFound);
                }
                if self.sold_to.is_some() || self.active_hold(now).is_some() {
                    return Err(TicketError::AlreadyReserved);
                }
                let mut events: Vec<TicketEvent> = self.release_lapsed(now).into_iter().collect();
                events.push(TicketEvent::Reserved(TicketReserved {
                    order_id: order_id.clone(),
                    expires_at: now + hold_ms,
                }));
                Ok(events)
            }
            TicketCommand::ReleaseTicket { order_id } => match &self.reservation {
                Some(held) if &held.order_id == order_id => {
                    Ok(vec![TicketEvent::Released(TicketReleased { order_id: order_id.clone() })])
                }
                _ => Ok(vec![]),
            },
            TicketCommand::SellTicket { order_id } => {
                if self.sold_to.as_ref() == Some(order_id) {
                    return Ok(vec![]);
                }
                match &self.reservation {
                    Some(held) if &held.order_id == order_id => {
                        Ok(vec![TicketEvent::Sold(TicketSold { order_id: order_id.clone() })])
                    }
                    _ => Err(TicketError::NotReservedByOrder),
                }
            }
        }
    }

    fn evolve(self, event: &TicketEvent) -> Self {
        match event {
            TicketEvent::Created(e) => Ticket {
                exists: true,
                title: e.title.clone(),
                price_minor: e.price_minor,
                currency: Currency::from_log(&e.currency),
                user_id: e.user_id.clone(),
                reservation: None,
                sold_to: None,
            },
            TicketEvent::Updated(e) => Ticket {
                title: e.title.clone(),
                price_minor: e.price_minor,
                currency: Currency::from_log(&e.currency),
                ..self
            },
            TicketEvent::Reserved(e) => Ticket {
                reservation: Some(Reservation { order_id: e.order_id.clone(), expires_at: e.expires_at }),
                ..self
            },
            TicketEvent::Released(_) => Ticket { reservation: None, ..self },
            TicketEvent::Sold(e) => Ticket { reservation: None, sold_to: Some(e.order_id.clone()), ..self },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::aggregate::testing::given;
    use proptest::prelude::*;
    use serde_json::json;

    fn usd(cents: i64) -> Price {
        Price::from_minor(cents, Currency::USD).unwrap()
    }

    fn title(s: &str) -> Title {
        Title::parse(Some(&json!(s))).unwrap()
    }

    fn created(user: &str) -> TicketEvent {
        TicketEvent::Created(TicketCreated { title: "concert".into(), price_minor: 2000, currency: "USD".into(), user_id: user.into() })
    }

    #[test]
    fn a_new_ticket_is_created() {
        given::<Ticket>(vec![])
            .when(TicketCommand::CreateTicket {
                title: title("concert"),
                price: usd(2000),
                user_id: "alice".into(),
            })
            .then_expect_events(vec![created("alice")]);
    }

    #[test]
    fn an_existing_ticket_cannot_be_created_again() {
        given::<Ticket>(vec![created("alice")])
            .when(TicketCommand::CreateTicket { title: title("x"), price: usd(1), user_id: "alice".into() })
            .then_expect_error(TicketError::AlreadyExists);
    }

    #[test]
    fn the_owner_updates_title_and_price() {
        given::<Ticket>(vec![created("alice")])
            .when(TicketCommand::UpdateTicket { title: title("opera"), price: usd(150), user_id: "alice".into() })
            .then_expect_events(vec![TicketEvent::Updated(TicketUpdated {
                title: "opera".into(),
                price_minor: 150,
                currency: "USD".into(),
                user_id: "alice".into(),
            })]);
    }

    #[test]
    fn only_the_owner_updates() {
        given::<Ticket>(vec![created("alice")])
            .when(TicketCommand::UpdateTicket { title: title("x"), price: usd(1), user_id: "bob".into() })
            .then_expect_error(TicketError::NotOwner);
    }

    #[test]
    fn an_unknown_ticket_is_not_found() {
        given::<Ticket>(vec![])
            .when(TicketCommand::UpdateTicket { title: title("x"), price: usd(1), user_id: "bob".into() })
            .then_expect_error(TicketError::NotFound);
    }

    fn reserved(order: &str, until: i64) -> TicketEvent {
        TicketEvent::Reserved(TicketReserved { order_id: order.into(), expires_at: until })
    }

    #[test]
    fn a_reserved_ticket_cannot_be_edited() {
        given::<Ticket>(vec![created("alice"), reserved("o1", 100)])
            .at(99)
            .when(TicketCommand::UpdateTicket { title: title("x"), price: usd(1), user_id: "alice".into() })
            .then_expect_error(TicketError::Reserved);
    }

    #[test]
    fn an_expired_hold_never_blocks_editing() {
        given::<Ticket>(vec![created("alice"), reserved("o1", 100)])
            .at(100)
            .when(TicketCommand::UpdateTicket { title: title("opera"), price: usd(150), user_id: "alice".into() })
            .then_expect_events(vec![
                TicketEvent::Released(TicketReleased { order_id: "o1".into() }),
                TicketEvent::Updated(TicketUpdated { title: "opera".into(), price_minor: 150, currency: "USD".into(), user_id: "alice".into() }),
            ]);
    }

    #[test]
    fn a_held_ticket_cannot_be_reserved_again() {
        given::<Ticket>(vec![created("alice"), reserved("o1", 100)])
            .at(50)
            .when(TicketCommand::ReserveTicket { order_id: "o2".into(), hold_ms: 150 })
            .then_expect_error(TicketError::AlreadyReserved);
    }

    #[test]
    fn the_hold_runs_on_the_owners_clock() {
        given::<Ticket>(vec![created("alice")])
            .at(1_000)
            .when(TicketCommand::ReserveTicket { order_id: "o1".into(), hold_ms: 900_000 })
            .then_expect_events(vec![reserved("o1", 901_000)]);
    }

    #[test]
    fn a_lapsed_hold_is_released_by_the_next_reservation() {
        given::<Ticket>(vec![created("alice"), reserved("o1", 100)])
            .at(100)
            .when(TicketCommand::ReserveTicket { order_id: "o2".into(), hold_ms: 100 })
            .then_expect_events(vec![
                TicketEvent::Released(TicketReleased { order_id: "o1".into() }),
                reserved("o2", 200),
            ]);
    }

    #[test]
    fn only_the_holding_order_releases_or_buys() {
        given::<Ticket>(vec![created("alice"), reserved("o1", 100)])
            .when(TicketCommand::ReleaseTicket { order_id: "o2".into() })
            .then_expect_events(vec![]);
        given::<Ticket>(vec![created("alice"), reserved("o1", 100)])
            .when(TicketCommand::SellTicket { order_id: "o2".into() })
            .then_expect_error(TicketError::NotReservedByOrder);
        given::<Ticket>(vec![created("alice"), reserved("o1", 100)])
            .when(TicketCommand::SellTicket { order_id: "o1".into() })
            .then_expect_events(vec![TicketEvent::Sold(TicketSold { order_id: "o1".into() })]);
    }

    #[test]
    fn a_sold_ticket_can_be_neither_edited_nor_ordered() {
        let history = vec![created("alice"), reserved("o1", 100), TicketEvent::Sold(TicketSold { order_id: "o1".into() })];
        given::<Ticket>(history.clone())
            .at(500)
            .when(TicketCommand::ReserveTicket { order_id: "o2".into(), hold_ms: 400 })
            .then_expect_error(TicketError::AlreadyReserved);
        given::<Ticket>(history)
            .when(TicketCommand::UpdateTicket { title: title("x"), price: usd(1), user_id: "alice".into() })
            .then_expect_error(TicketError::Reserved);
    }

    #[test]
    fn titles_and_prices_are_validated() {
        assert!(Title::parse(None).is_err());
        assert!(Title::parse(Some(&json!("  "))).is_err());
        assert!(Title::parse(Some(&json!(12))).is_err());
        assert!(Price::parse(Some(&json!(-10)), None).is_err());
        assert!(Price::parse(Some(&json!(0)), None).is_err());
        assert_eq!(Price::parse(Some(&json!("12.50")), None).unwrap().minor(), 1250);
        assert_eq!(Price::parse(Some(&json!("10")), None).unwrap().minor(), 1000);
        assert_eq!(Price::parse(Some(&json!(".5")), None).unwrap().minor(), 50);
        for refused in ["", " ", "abc", "1e3", "-5", "+5", "0", "0.00", "12.505", "1.2.3", "12.", "NaN", "inf", "0x10", "1 000"] {
            assert!(Price::parse(Some(&json!(refused)), None).is_err(), "{refused:?} must be refused");
        }
        assert!(Price::parse(Some(&json!(true)), None).is_err());
        assert!(Price::parse(Some(&json!([10])), None).is_err());
        assert!(Price::parse(Some(&json!(10.001)), None).is_err());
        assert!(Price::parse(Some(&json!(1e300)), None).is_err());
        assert_eq!(Price::parse(Some(&json!(10.25)), None).unwrap().minor(), 1025);
        assert_eq!(Price::parse(Some(&json!(0.1)), None).unwrap().minor(), 10);
    }

    #[test]
    fn a_price_has_the_decimals_of_its_currency() {
        let yen = Price::parse(Some(&json!(1500)), Some(&json!("jpy"))).unwrap();
        assert_eq!((yen.minor(), yen.currency().code()), (1500, "JPY"));
        assert!(Price::parse(Some(&json!(15.5)), Some(&json!("JPY"))).is_err());
        assert_eq!(Price::parse(Some(&json!("1.125")), Some(&json!("KWD"))).unwrap().minor(), 1125);
        let unknown = Price::parse(Some(&json!(10)), Some(&json!("XYZ"))).unwrap_err();
        assert_eq!(unknown.field.as_deref(), Some("currency"));
        assert!(Price::parse(Some(&json!(10)), Some(&json!(12))).is_err());
    }

    proptest! {
        #[test]
        fn every_two_decimal_price_round_trips(cents in 1i64..Price::MAX_MAJOR * 100) {
            let price = Price::parse(Some(&json!(cents as f64 / 100.0)), None).unwrap();
            prop_assert_eq!(price.minor(), cents);
        }

        #[test]
        fn price_parsing_never_panics(x in proptest::num::f64::ANY) {
            let _ = Price::parse(serde_json::Number::from_f64(x).map(serde_json::Value::Number).as_ref(), None);
        }
    }
}
