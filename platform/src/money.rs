//! Amounts of money: an integer count of a currency's minor unit (cents for USD, yen for JPY),
//! never a float, with the currency's ISO 4217 code beside it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The currencies a price may be in, with the decimals of their minor unit (ISO 4217).
const CURRENCIES: &[(&str, u32)] = &[
    ("AUD", 2), ("BHD", 3), ("BRL", 2), ("CAD", 2), ("CHF", 2), ("CNY", 2), ("CZK", 2),
    ("DKK", 2), ("EUR", 2), ("GBP", 2), ("HKD", 2), ("HUF", 2), ("IDR", 2), ("ILS", 2),
    ("INR", 2), ("ISK", 0), ("JOD", 3), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("MXN", 2),
    ("MYR", 2), ("NOK", 2), ("NZD", 2), ("OMR", 3), ("PHP", 2), ("PLN", 2), ("RON", 2),
    ("SEK", 2), ("SGD", 2), ("THB", 2), ("TND", 3), ("TRY", 2), ("TWD", 2), ("UAH", 2),
    ("USD", 2), ("VND", 0), ("ZAR", 2),
];

/// An ISO 4217 currency the marketplace prices in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

impl Currency {
    /// US dollars: the currency of every price written before prices named theirs.
    pub const USD: Currency = Currency { code: "USD", exponent: 2 };

    /// The currency with this code (case-insensitive), if the marketplace knows it.
    pub fn parse(code: &str) -> Option<Self> {
        // Read for every row a projection touches: no allocation, a binary search.
        let code: [u8; 3] = code.trim().as_bytes().try_into().ok()?;
        let code = code.map(|b| b.to_ascii_uppercase());
        CURRENCIES
            .binary_search_by(|(known, _)| known.as_bytes().cmp(&code[..]))
            .ok()
            .map(|i| Currency { code: CURRENCIES[i].0, exponent: CURRENCIES[i].1 })
    }

    /// The upper-case ISO 4217 code.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// How many decimals the minor unit has (2 for USD, 0 for JPY).
    pub fn exponent(self) -> u32 {
        self.exponent
    }

    /// Minor units per major unit (100 for USD).
    pub fn minor_per_major(self) -> i64 {
        10_i64.pow(self.exponent)
    }

    /// An amount of minor units in major units, as the JSON API shows prices.
    pub fn to_major(self, minor: i64) -> f64 {
        minor as f64 / self.minor_per_major() as f64
    }

    /// A currency code read from the log; codes the marketplace no longer knows stay readable
    /// with two decimals rather than failing the record.
    pub fn from_log(code: &str) -> Self {
        Self::parse(code).unwrap_or(Self::USD)
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::USD
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Code;
        impl serde::de::Visitor<'_> for Code {
            type Value = Currency;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an ISO 4217 currency code")
            }
            // Borrowed from the input where it can be (JSON rows): no String per row.
            fn visit_str<E: serde::de::Error>(self, code: &str) -> Result<Currency, E> {
                Currency::parse(code).ok_or_else(|| E::custom(format!("unknown currency {code:?}")))
            }
            // As `String` reads them, for formats that carry strings as bytes.
            fn visit_bytes<E: serde::de::Error>(self, code: &[u8]) -> Result<Currency, E> {
                let text = std::str::from_utf8(code).map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(code), &self))?;
                self.visit_str(text)
            }
        }
        deserializer.deserialize_str(Code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_case_insensitively_with_their_decimals() {
        assert_eq!(Currency::parse("usd"), Some(Currency::USD));
        assert_eq!(Currency::parse("JPY").map(Currency::exponent), Some(0));
        assert_eq!(Currency::parse("KWD").map(Currency::minor_per_major), Some(1000));
        assert_eq!(Currency::parse("XXX"), None);
        assert_eq!(Currency::parse("JPY").unwrap().to_major(1500), 1500.0);
        assert_eq!(Currency::USD.to_major(1250), 12.5);
    }

    #[test]
    fn every_known_code_parses_to_itself() {
        // `parse` searches the list by halves: it must stay sorted.
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0), "CURRENCIES is sorted by code");
        for (code, exponent) in CURRENCIES {
            assert_eq!(Currency::parse(code), Some(Currency { code, exponent: *exponent }));
            assert_eq!(Currency::parse(&format!(" {} ", code.to_lowercase())).map(Currency::code), Some(*code));
        }
        assert_eq!(Currency::parse("US"), None);
        assert_eq!(Currency::parse("USDX"), None);
        assert_eq!(Currency::parse("ÜSD"), None);
    }

    #[test]
    fn rows_read_their_currency_from_json() {
        let currency: Currency = serde_json::from_str("\"jpy\"").unwrap();
        assert_eq!(currency.code(), "JPY");
        let error = serde_json::from_str::<Currency>("\"XXX\"").unwrap_err().to_string();
        assert!(error.contains("unknown currency \"XXX\""), "{error}");
    }

    #[test]
    fn an_unknown_code_in_the_log_reads_as_usd() {
        assert_eq!(Currency::from_log("ABC"), Currency::USD);
    }
}
