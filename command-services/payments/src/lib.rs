//! The payments command service: the `PaymentGateway` port with its sandbox and Stripe
//! adapters, the Payment aggregate, the settlement of attempts (and its reconciler), and
//! `POST /api/payments`.

pub mod domain;
pub mod gateway;
pub mod http;
pub mod settlement;
