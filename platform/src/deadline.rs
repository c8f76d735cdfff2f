//! One end-to-end deadline per request, and load shedding.
//!
//! Every public request gets a deadline when it arrives; the steps it takes (a command, the
//! forward of a command to its owner, the commands after it) share what is left of it instead
//! of each starting a timer of its own, so one request never takes longer than the deadline
//! (an order, a reservation then a creation, each possibly forwarded, once took about 18 s).
//! Requests beyond a bound of in-flight ones are answered 503 with `Retry-After` at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::http::ApiError;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Time left before the current request's deadline, at most `cap`; all of `cap` outside a
/// request (process managers, workers).
pub fn remaining(cap: Duration) -> Duration {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .map_or(cap, |left| left.min(cap))
}

/// The limits every public request runs under.
#[derive(Clone)]
pub struct RequestLimits {
    timeout: Duration,
    in_flight: Arc<Semaphore>,
}

impl RequestLimits {
    /// At most `max_in_flight` requests at once, each answered within `timeout`.
    pub fn new(timeout: Duration, max_in_flight: usize) -> Self {
        Self { timeout, in_flight: Arc::new(Semaphore::new(max_in_flight)) }
    }
}

/// The middleware: sheds a request over the in-flight bound, and answers 503 for one that runs
/// past its deadline (a command may have landed meanwhile: the answer's `Idempotency-Key`
/// retries it safely). Only `/api/` routes: health and metrics always answer.
pub async fn limit_requests(State(limits): State<RequestLimits>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        crate::metrics::METRICS.shed();
        return ApiError::Unavailable("too many requests in flight".into()).into_response();
    };
    let deadline = Instant::now() + limits.timeout;
    match DEADLINE.scope(deadline, tokio::time::timeout_at(deadline, next.run(request))).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("the request ran past its deadline".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_share_what_is_left_of_the_request() {
        assert_eq!(remaining(Duration::from_secs(3)), Duration::from_secs(3), "no request: the cap");
        let deadline = Instant::now() + Duration::from_millis(200);
        DEADLINE
            .scope(deadline, async {
                assert!(remaining(Duration::from_secs(3)) <= Duration::from_millis(200));
                assert!(remaining(Duration::from_millis(50)) <= Duration::from_millis(50));
                tokio::time::sleep_until(deadline).await;
                assert_eq!(remaining(Duration::from_secs(3)), Duration::ZERO);
            })
            .await;
    }
}
