//! The web client (`web/`, built into `web/dist`) served at `/`: its files, its runtime
//! configuration at `/config.json`, and its `index.html` for every other path outside `/api/`,
//! so the client's own routes load on a reload or from a link.

use std::path::Path;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use platform::http::not_found;
use tower_http::services::{ServeDir, ServeFile};

/// The routes serving the built client in `dir`, meant as the router's fallback: `/api/…`
/// paths no route took still answer the API's 404. `stripe_publishable_key`, when set, tells
/// the client to take cards with Stripe.js rather than offer the sandbox's test tokens.
pub fn web_client(dir: &Path, stripe_publishable_key: Option<&str>) -> Router {
    if !dir.join("index.html").is_file() {
        tracing::warn!(message = "The web client is not built; `/` says how to build it.", dir = %dir.display());
        return Router::new().fallback(unbuilt);
    }
    let config = axum::Json(serde_json::json!({ "stripePublishableKey": stripe_publishable_key }));
    let files = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
    Router::new()
        .route("/config.json", axum::routing::get(move || std::future::ready(config.clone())))
        .fallback_service(files)
        .layer(axum::middleware::from_fn(api_paths_stay_api))
        .layer(axum::middleware::map_response(cache_policy))
}

async fn api_paths_stay_api(request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/api/") || request.uri().path() == "/api" {
        return not_found().await.into_response();
    }
    next.run(request).await
}

/// Built assets carry a content hash in their names and never change; the page itself must
/// be looked at again to pick up a new build.
async fn cache_policy(request_path: axum::extract::OriginalUri, mut response: Response) -> Response {
    let value = if request_path.path().starts_with("/assets/") && response.status() == StatusCode::OK {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

async fn unbuilt(request: Request) -> Response {
    if request.uri().path().starts_with("/api") {
        return not_found().await.into_response();
    }
    let page = "<!doctype html><title>Ticketing</title><h1>The web client is not built</h1>\
        <p>Run <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code> \
        (<code>scripts/up.sh</code> does), or point <code>TICKETING_WEB_DIR</code> at a build.</p>";
    (StatusCode::NOT_FOUND, Html(page)).into_response()
}
