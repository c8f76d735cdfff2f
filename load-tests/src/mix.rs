//! The request mix: which share of arrivals does what.

use std::fmt;
use std::str::FromStr;

/// One kind of request the load generator sends, named after its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Operation {
    /// `GET /api/tickets`.
    Browse,
    /// `GET /api/tickets/:id`.
    Show,
    /// `POST /api/tickets`.
    CreateTicket,
    /// `PUT /api/tickets/:id`.
    UpdateTicket,
    /// `POST /api/orders`.
    Order,
    /// `POST /api/payments`.
    Pay,
    /// `POST /api/users/signup`.
    Signup,
    /// `POST /api/users/signin`.
    Signin,
}

impl Operation {
    /// Every operation, in report order.
    pub const ALL: [Operation; 8] = [
        Operation::Browse,
        Operation::Show,
        Operation::CreateTicket,
        Operation::UpdateTicket,
        Operation::Order,
        Operation::Pay,
        Operation::Signup,
        Operation::Signin,
    ];

    /// The route, as reports name it.
    pub fn route(self) -> &'static str {
        match self {
            Operation::Browse => "GET /api/tickets",
            Operation::Show => "GET /api/tickets/:id",
            Operation::CreateTicket => "POST /api/tickets",
            Operation::UpdateTicket => "PUT /api/tickets/:id",
            Operation::Order => "POST /api/orders",
            Operation::Pay => "POST /api/payments",
            Operation::Signup => "POST /api/users/signup",
            Operation::Signin => "POST /api/users/signin",
        }
    }

    /// Whether the request is a command (appends to the log) rather than a query.
    pub fn is_command(self) -> bool {
        !matches!(self, Operation::Browse | Operation::Show | Operation::Signin)
    }
}

/// A share of the mix as the `--mix` flag names it; shares with two operations split evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Share {
    Browse,
    Show,
    Write,
    Order,
    Pay,
    Session,
}

impl Share {
    const NAMES: [(&'static str, Share); 6] = [
        ("browse", Share::Browse),
        ("show", Share::Show),
        ("write", Share::Write),
        ("order", Share::Order),
        ("pay", Share::Pay),
        ("session", Share::Session),
    ];

    fn operations(self) -> &'static [Operation] {
        match self {
            Share::Browse => &[Operation::Browse],
            Share::Show => &[Operation::Show],
            Share::Write => &[Operation::CreateTicket, Operation::UpdateTicket],
            Share::Order => &[Operation::Order],
            Share::Pay => &[Operation::Pay],
            Share::Session => &[Operation::Signup, Operation::Signin],
        }
    }
}

/// Weights of the operations; [`Mix::pick`] draws one in proportion.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Operation and its cumulative weight, ascending.
    cumulative: Vec<(Operation, f64)>,
    shares: Vec<(&'static str, f64)>,
}

/// The issue's realistic mix: browse 70%, show 10%, create/update 8%, order 7%, pay 3%,
/// signup/signin 2%.
pub const DEFAULT_MIX: &str = "browse=70,show=10,write=8,order=7,pay=3,session=2";

/// A `--mix` value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid mix {input:?}: {reason} (expected e.g. {DEFAULT_MIX}; shares: browse, show, write, order, pay, session)")]
pub struct MixError {
    input: String,
    reason: String,
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| MixError { input: input.to_string(), reason };
        let mut shares: Vec<(&'static str, Share, f64)> = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| error(format!("{part:?} is not name=weight")))?;
            let (name, share) = Share::NAMES
                .iter()
                .find(|(known, _)| *known == name.trim())
                .copied()
                .ok_or_else(|| error(format!("unknown share {:?}", name.trim())))?;
            let weight: f64 = weight.trim().parse().map_err(|_| error(format!("weight of {name} is not a number")))?;
            if !weight.is_finite() || weight < 0.0 {
                return Err(error(format!("weight of {name} must be zero or more")));
            }
            if shares.iter().any(|(seen, _, _)| *seen == name) {
                return Err(error(format!("{name} is given twice")));
            }
            shares.push((name, share, weight));
        }
        let total: f64 = shares.iter().map(|(_, _, w)| w).sum();
        if total <= 0.0 {
            return Err(error("the weights add up to zero".into()));
        }
        let mut cumulative = Vec::new();
        let mut running = 0.0;
        for (_, share, weight) in &shares {
            let operations = share.operations();
            for operation in operations {
                running += weight / total / operations.len() as f64;
                cumulative.push((*operation, running));
            }
        }
        Ok(Mix { cumulative, shares: shares.iter().map(|(n, _, w)| (*n, w / total)).collect() })
    }
}

impl Default for Mix {
    fn default() -> Self {
        DEFAULT_MIX.parse().expect("the default mix is valid")
    }
}

impl Mix {
    /// The operation whose slice of `[0, 1)` holds `draw`.
    pub fn pick(&self, draw: f64) -> Operation {
        self.cumulative
            .iter()
            .find(|(_, upto)| draw < *upto)
            .or(self.cumulative.last())
            .map(|(operation, _)| *operation)
            .expect("a mix has at least one operation")
    }

    /// Fraction of arrivals that are `operation`.
    pub fn fraction(&self, operation: Operation) -> f64 {
        let mut previous = 0.0;
        let mut fraction = 0.0;
        for (candidate, upto) in &self.cumulative {
            if *candidate == operation {
                fraction += upto - previous;
            }
            previous = *upto;
        }
        fraction
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.shares.iter().map(|(name, share)| format!("{name}={:.0}%", share * 100.0)).collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_has_the_issue_s_shares() {
        let mix = Mix::default();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(mix.fraction(Operation::Browse), 0.70));
        assert!(close(mix.fraction(Operation::Show), 0.10));
        assert!(close(mix.fraction(Operation::CreateTicket) + mix.fraction(Operation::UpdateTicket), 0.08));
        assert!(close(mix.fraction(Operation::Order), 0.07));
        assert!(close(mix.fraction(Operation::Pay), 0.03));
        assert!(close(mix.fraction(Operation::Signup) + mix.fraction(Operation::Signin), 0.02));
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix: Mix = "browse=3,order=1".parse().unwrap();
        let mut orders = 0;
        for i in 0..10_000 {
            if mix.pick(i as f64 / 10_000.0) == Operation::Order {
                orders += 1;
            }
        }
        assert_eq!(orders, 2_500);
        assert_eq!(mix.pick(0.999_999_9), Operation::Order);
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        assert!("browse=70,bogus=1".parse::<Mix>().unwrap_err().to_string().contains("unknown share \"bogus\""));
        assert!("browse".parse::<Mix>().unwrap_err().to_string().contains("not name=weight"));
        assert!("browse=-1".parse::<Mix>().unwrap_err().to_string().contains("zero or more"));
        assert!("browse=0".parse::<Mix>().unwrap_err().to_string().contains("add up to zero"));
        assert!("browse=1,browse=2".parse::<Mix>().unwrap_err().to_string().contains("twice"));
    }
}
