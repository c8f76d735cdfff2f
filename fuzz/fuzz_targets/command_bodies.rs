//! Hostile JSON command bodies through every route's parsing and validation. Nothing may
//! panic, and every refusal is a client error (4xx) in the API's error shape.
#![no_main]

use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use platform::http::ApiError;

fn refused_as_client_error(result: Result<impl Sized, ApiError>) {
    if let Err(error) = result {
        let status = error.into_response().status();
        assert!(status.is_client_error(), "a body was refused with {status}");
    }
}

fuzz_target!(|data: &[u8]| {
    let body = match platform::http::parse_json_body(data) {
        Ok(body) => body,
        Err(error) => return refused_as_client_error(Err::<(), _>(error)),
    };
    refused_as_client_error(users_command::http::parse_sign_up(&body));
    refused_as_client_error(users_command::http::parse_sign_in(&body));
    refused_as_client_error(tickets_command::http::parse_ticket_body(&body));
    refused_as_client_error(orders_command::http::parse_ticket_id(&body));
    refused_as_client_error(payments_command::http::parse_payment_body(&body));
});
