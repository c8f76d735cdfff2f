//! Token buckets keyed by who asks (a client address, an account), and the client address of
//! a request, taken from `X-Forwarded-For` only through configured trusted proxies.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// How many attempts a key may make at once (`burst`), refilled evenly over `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Attempts available to a key that has been quiet.
    pub burst: u32,
    /// Time for an empty bucket to fill again.
    pub period: Duration,
}

/// A rate limit spelled wrongly.
#[derive(Debug, thiserror::Error)]
#[error("expected `off` or `<attempts>/<period>` such as `5/5m` (period in s, m or h), got {0:?}")]
pub struct RateLimitParseError(String);

impl RateLimit {
    fn refill_interval(&self) -> Duration {
        self.period / self.burst
    }
}

/// Parses `off` (no limit: `None`) or `<burst>/<period>`, the period a number with `s`, `m`
/// or `h`, for example `5/5m`.
pub fn parse_rate_limit(value: &str) -> Result<Option<RateLimit>, RateLimitParseError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let error = || RateLimitParseError(value.to_string());
    let (burst, period) = value.split_once('/').ok_or_else(error)?;
    let burst: u32 = burst.trim().parse().map_err(|_| error())?;
    let period = period.trim();
    let (number, unit) = period.split_at(period.len().saturating_sub(1));
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(error()),
    };
    let count: u64 = number.parse().map_err(|_| error())?;
    if burst == 0 || count == 0 {
        return Err(error());
    }
    Ok(Some(RateLimit { burst, period: Duration::from_secs(count * seconds) }))
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets of one [`RateLimit`], one per key, at most `capacity` of them: buckets that have
/// filled up again are dropped first, since they hold nothing a fresh one would not.
pub struct TokenBuckets<K> {
    limit: RateLimit,
    capacity: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    /// Buckets of `limit` for at most `capacity` keys.
    pub fn new(limit: RateLimit, capacity: usize) -> Self {
        Self { limit, capacity: capacity.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        let rate = f64::from(self.limit.burst) / self.limit.period.as_secs_f64();
        Bucket { tokens: (bucket.tokens + elapsed * rate).min(f64::from(self.limit.burst)), updated: now }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.capacity {
            let full = f64::from(self.limit.burst);
            buckets.retain(|_, bucket| self.refilled(*bucket, now).tokens < full);
            if buckets.len() >= self.capacity {
                // Every bucket is in use (an attack from very many keys): the one closest to
                // full makes room. Refusing newcomers instead would let the attacker shut every
                // new client out; the bound on memory holds either way.
                let fullest = buckets
                    .iter()
                    .max_by(|a, b| self.refilled(*a.1, now).tokens.total_cmp(&self.refilled(*b.1, now).tokens))
                    .map(|(key, _)| key.clone());
                if let Some(key) = fullest {
                    tracing::warn!(message = "Rate-limit buckets are full; dropping the fullest.", capacity = self.capacity);
                    buckets.remove(&key);
                }
            }
        }
        let bucket = buckets
            .get(key)
            .map(|b| self.refilled(*b, now))
            .unwrap_or(Bucket { tokens: f64::from(self.limit.burst), updated: now });
        if bucket.tokens >= 1.0 {
            buckets.insert(key.clone(), Bucket { tokens: bucket.tokens - 1.0, ..bucket });
            Ok(())
        } else {
            buckets.insert(key.clone(), bucket);
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing * self.limit.refill_interval().as_secs_f64()))
        }
    }

    /// Gives back a token taken for an attempt that turned out not to count.
    pub fn give_back(&self, key: &K, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bucket) = buckets.get(key).copied() {
            let mut bucket = self.refilled(bucket, now);
            bucket.tokens = (bucket.tokens + 1.0).min(f64::from(self.limit.burst));
            buckets.insert(key.clone(), bucket);
        }
    }
}

/// The proxies whose `X-Forwarded-For` entries are believed (`TICKETING_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

/// A trusted-proxy list spelled wrongly.
#[derive(Debug, thiserror::Error)]
#[error("expected comma-separated addresses or CIDR ranges such as 10.0.0.0/8, got {0:?}")]
pub struct TrustedProxiesParseError(String);

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesParseError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => part.parse::<IpAddr>().map(IpNet::from).map_err(|_| TrustedProxiesParseError(part.to_string()))?,
            };
            nets.push(net);
        }
        Ok(Self(Arc::new(nets)))
    }
}

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client address of a request that came from `peer`: the peer itself, unless it is a
    /// trusted proxy; then the right-most `X-Forwarded-For` entry that is not a trusted proxy
    /// (entries further left were written by the client and prove nothing).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in forwarded.iter().rev() {
            let Ok(address) = entry.parse::<IpAddr>() else {
                // A hop we cannot read: the last one we trust said this, so stop there.
                return client;
            };
            client = address;
            if !self.trusts(address) {
                return address;
            }
        }
        client
    }
}

/// The address a request comes from, as [`TrustedProxies::client_address`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

impl<S> FromRequestParts<S> for ClientAddress
where
    TrustedProxies: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Served without connection info (an in-process test): one unspecified address.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        Ok(ClientAddress(TrustedProxies::from_ref(state).client_address(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn limit(burst: u32, seconds: u64) -> RateLimit {
        RateLimit { burst, period: Duration::from_secs(seconds) }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_one_at_a_time() {
        let buckets = TokenBuckets::new(limit(3, 30), 100);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(buckets.take(&"a", start).is_ok());
        }
        let wait = buckets.take(&"a", start).unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10), "{wait:?}");
        assert!(buckets.take(&"b", start).is_ok(), "another key has its own bucket");
        assert!(buckets.take(&"a", start + Duration::from_secs(10)).is_ok());
        assert!(buckets.take(&"a", start + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn a_token_given_back_can_be_taken_again() {
        let buckets = TokenBuckets::new(limit(1, 60), 100);
        let now = Instant::now();
        buckets.take(&"a", now).unwrap();
        buckets.give_back(&"a", now);
        assert!(buckets.take(&"a", now).is_ok());
    }

    #[test]
    fn at_capacity_the_fullest_bucket_makes_room_and_drained_ones_stay() {
        let buckets = TokenBuckets::new(limit(2, 60), 2);
        let now = Instant::now();
        buckets.take(&1, now).unwrap();
        buckets.take(&1, now).unwrap();
        buckets.take(&2, now).unwrap();
        assert!(buckets.take(&3, now).is_ok(), "a newcomer is never shut out");
        assert!(buckets.take(&1, now).is_err(), "the drained bucket was kept");
        assert_eq!(buckets.buckets.lock().unwrap().len(), 2, "memory stays bounded");
    }

    #[test]
    fn rate_limits_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_rate_limit("5/5m").unwrap(), Some(limit(5, 300)));
        assert_eq!(parse_rate_limit("20/1h").unwrap(), Some(limit(20, 3600)));
        assert_eq!(parse_rate_limit("off").unwrap(), None);
        for bad in ["", "5", "5/", "0/1m", "5/0s", "5/10d", "x/1m", "5/m"] {
            assert!(parse_rate_limit(bad).is_err(), "{bad:?}");
        }
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(proxies.client_address(ip("203.0.113.9"), &forwarded("1.2.3.4")), ip("203.0.113.9"));
        // Through a trusted proxy: the entry it appended, not what the client wrote before it.
        assert_eq!(proxies.client_address(ip("10.1.2.3"), &forwarded("1.2.3.4, 198.51.100.7")), ip("198.51.100.7"));
        // Two trusted hops.
        assert_eq!(
            proxies.client_address(ip("10.1.2.3"), &forwarded("1.2.3.4, 198.51.100.7, 192.168.1.1")),
            ip("198.51.100.7")
        );
        // A trusted proxy without the header is the client as far as we can tell.
        assert_eq!(proxies.client_address(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
        // Garbage from the client side stops the walk at the last trusted hop's word.
        assert_eq!(proxies.client_address(ip("10.1.2.3"), &forwarded("nonsense, 10.9.9.9")), ip("10.9.9.9"));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().0.is_empty());
    }
}
