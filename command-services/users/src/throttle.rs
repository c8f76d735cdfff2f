//! Throttling of sign-in and sign-up, so passwords cannot be guessed at speed and no one can
//! lock a real user out:
//!
//! - every attempt from one client address takes a token of that address (password spraying
//!   across accounts, sign-up floods); a successful sign-in gives it back;
//! - a failed attempt on one account from one address takes a token of that pair (guessing
//!   one account's password from one place);
//! - a failed attempt on one account from an address that never signed in to it takes a token
//!   of the account (guessing from many places). Addresses the account signed in from are
//!   exempt, so an attacker draining it does not shut the owner out of their usual places,
//!   and the pair bucket of the owner's own address is theirs alone.
//!
//! Tokens for an account are taken before the password is checked (so parallel guesses cannot
//! all slip through) and given back when it turns out right.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use platform::http::ApiError;
use platform::throttle::{RateLimit, TokenBuckets};

/// Keys each bucket family keeps at most (a few MiB at most).
const BUCKET_CAPACITY: usize = 100_000;
/// Accounts whose successful addresses are remembered at most, and addresses per account.
const KNOWN_ACCOUNTS: usize = 100_000;
const KNOWN_ADDRESSES_PER_ACCOUNT: usize = 8;

/// The three limits (`None`: not limited).
#[derive(Debug, Clone, Copy)]
pub struct SignInLimits {
    /// Attempts (sign-in and sign-up) from one client address.
    pub per_address: Option<RateLimit>,
    /// Failed attempts on one account from one client address.
    pub per_account_address: Option<RateLimit>,
    /// Failed attempts on one account from addresses it has not signed in from.
    pub per_account: Option<RateLimit>,
}

/// The throttle's state: one per process serving the users routes.
pub struct SignInThrottle {
    per_address: Option<TokenBuckets<IpAddr>>,
    per_account_address: Option<TokenBuckets<(String, IpAddr)>>,
    per_account: Option<TokenBuckets<String>>,
    known: Mutex<HashMap<String, VecDeque<IpAddr>>>,
}

/// Tokens taken for one attempt on an account, given back if it succeeds.
#[must_use = "an attempt's tokens are given back on success or kept on failure"]
pub struct Attempt {
    account: String,
    address: IpAddr,
    took_pair: bool,
    took_account: bool,
}

/// The address a bucket is kept for: an IPv6 client by its /64, since one host holds a whole
/// /64 and could otherwise take a fresh bucket per request.
fn bucket_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
        v4 => v4,
    }
}

fn too_many(wait: Duration) -> ApiError {
    ApiError::TooManyRequests { retry_after_seconds: wait.as_secs_f64().ceil() as u64 }
}

impl SignInThrottle {
    /// A throttle with these limits.
    pub fn new(limits: SignInLimits) -> Self {
        Self {
            per_address: limits.per_address.map(|l| TokenBuckets::new(l, BUCKET_CAPACITY)),
            per_account_address: limits.per_account_address.map(|l| TokenBuckets::new(l, BUCKET_CAPACITY)),
            per_account: limits.per_account.map(|l| TokenBuckets::new(l, BUCKET_CAPACITY)),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the address's token for any attempt.
    pub fn admit(&self, address: IpAddr) -> Result<(), ApiError> {
        let address = bucket_address(address);
        match &self.per_address {
            Some(buckets) => buckets.take(&address, Instant::now()).map_err(too_many),
            None => Ok(()),
        }
    }

    fn knows(&self, account: &str, address: IpAddr) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(account).is_some_and(|addresses| addresses.contains(&address))
    }

    /// Takes the account's tokens for an attempt on `account` (lower-cased email) from
    /// `address`; refused when either bucket is empty.
    pub fn begin(&self, account: &str, address: IpAddr) -> Result<Attempt, ApiError> {
        let address = bucket_address(address);
        let now = Instant::now();
        let mut attempt = Attempt { account: account.to_string(), address, took_pair: false, took_account: false };
        if let Some(pairs) = &self.per_account_address {
            pairs.take(&(attempt.account.clone(), address), now).map_err(too_many)?;
            attempt.took_pair = true;
        }
        if let Some(accounts) = &self.per_account
            && !self.knows(account, address)
        {
            if let Err(wait) = accounts.take(&attempt.account, now) {
                self.give_back(&attempt, now);
                return Err(too_many(wait));
            }
            attempt.took_account = true;
        }
        Ok(attempt)
    }

    fn give_back(&self, attempt: &Attempt, now: Instant) {
        if let (true, Some(pairs)) = (attempt.took_pair, &self.per_account_address) {
            pairs.give_back(&(attempt.account.clone(), attempt.address), now);
        }
        if let (true, Some(accounts)) = (attempt.took_account, &self.per_account) {
            accounts.give_back(&attempt.account, now);
        }
    }

    /// The attempt was a sign-up that went through: its account tokens come back.
    pub fn signed_up(&self, attempt: Attempt) {
        self.give_back(&attempt, Instant::now());
    }

    /// The attempt failed on our side (a service unavailable): it does not count, its tokens
    /// come back, the address's too.
    pub fn void(&self, attempt: Attempt) {
        let now = Instant::now();
        self.give_back(&attempt, now);
        if let Some(addresses) = &self.per_address {
            addresses.give_back(&attempt.address, now);
        }
    }

    /// The attempt was a successful sign-in: every token comes back, and its address is
    /// remembered as one the account signs in from.
    pub fn signed_in(&self, attempt: Attempt) {
        let now = Instant::now();
        self.give_back(&attempt, now);
        if let Some(addresses) = &self.per_address {
            addresses.give_back(&attempt.address, now);
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if !known.contains_key(&attempt.account) && known.len() >= KNOWN_ACCOUNTS {
            // One account's addresses make room (its owner is subject to the account-wide limit
            // again, never locked out of their own address's bucket); never all at once, which
            // an attacker with enough accounts of their own could provoke.
            if let Some(evicted) = known.keys().next().cloned() {
                known.remove(&evicted);
            }
        }
        let addresses = known.entry(attempt.account).or_default();
        if !addresses.contains(&attempt.address) {
            if addresses.len() >= KNOWN_ADDRESSES_PER_ACCOUNT {
                addresses.pop_front();
            }
            addresses.push_back(attempt.address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SignInLimits {
        let limit = |burst, seconds| Some(RateLimit { burst, period: Duration::from_secs(seconds) });
        SignInLimits { per_address: limit(50, 300), per_account_address: limit(5, 300), per_account: limit(10, 3600) }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, n])
    }

    #[test]
    fn guesses_from_one_address_stop_after_the_pair_burst() {
        let throttle = SignInThrottle::new(limits());
        for _ in 0..5 {
            drop(throttle.begin("a@b.c", ip(1)).unwrap());
        }
        let refused = throttle.begin("a@b.c", ip(1)).err().expect("the sixth guess is refused");
        assert!(matches!(refused, ApiError::TooManyRequests { retry_after_seconds: 60 }));
        assert!(throttle.begin("a@b.c", ip(2)).is_ok(), "another address has its own pair bucket");
    }

    #[test]
    fn the_owner_signs_in_from_a_known_address_while_others_drain_the_account() {
        let throttle = SignInThrottle::new(limits());
        let owner = throttle.begin("a@b.c", ip(1)).unwrap();
        throttle.signed_in(owner);
        // Guesses from many addresses drain the account-wide bucket.
        for n in 10..20 {
            drop(throttle.begin("a@b.c", ip(n)).unwrap());
        }
        assert!(throttle.begin("a@b.c", ip(30)).is_err(), "a new address is refused now");
        let owner = throttle.begin("a@b.c", ip(1)).expect("the owner's known address is not");
        throttle.signed_in(owner);
    }

    #[test]
    fn successes_give_their_tokens_back() {
        let throttle = SignInThrottle::new(limits());
        for _ in 0..20 {
            throttle.admit(ip(1)).unwrap();
            let attempt = throttle.begin("a@b.c", ip(1)).unwrap();
            throttle.signed_in(attempt);
        }
    }

    #[test]
    fn an_ipv6_host_is_one_client_across_its_64() {
        let throttle = SignInThrottle::new(limits());
        for n in 0..50u16 {
            throttle.admit(IpAddr::from([0x2001, 0xdb8, 1, 2, n, n, n, n])).unwrap();
        }
        assert!(throttle.admit(IpAddr::from([0x2001, 0xdb8, 1, 2, 9, 9, 9, 9])).is_err());
        assert!(throttle.admit(IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1])).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let throttle = SignInThrottle::new(limits());
        for _ in 0..50 {
            throttle.admit(ip(1)).unwrap();
        }
        assert!(throttle.admit(ip(1)).is_err());
        assert!(throttle.admit(ip(2)).is_ok());
    }
}
