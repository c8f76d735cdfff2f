//! The web client served at `/` by the launcher.

use reqwest::{Method, StatusCode};

use crate::helpers::{Deployment, TestBroker};

#[tokio::test]
async fn the_launcher_serves_the_built_client_its_routes_and_still_the_apis_404() {
    let broker = TestBroker::start().await;
    let build = tempfile::tempdir().unwrap();
    std::fs::write(build.path().join("index.html"), "<!doctype html><div id=root></div>").unwrap();
    std::fs::create_dir(build.path().join("assets")).unwrap();
    std::fs::write(build.path().join("assets/app-1a2b.js"), "console.log(1)").unwrap();
    let dir = build.path().to_path_buf();
    let app = Deployment::new(&broker)
        .await
        .spawn_with(move |s| {
            s.web_dir = dir;
            s.stripe_publishable_key = Some("pk_test_51Example".into());
        })
        .await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.base)).send();

    // The client learns at run time how to take cards.
    let config: serde_json::Value = get("/config.json").await.unwrap().json().await.unwrap();
    assert_eq!(config["stripePublishableKey"], "pk_test_51Example");

    let page = get("/").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(page.text().await.unwrap().contains("id=root"));
    let asset = get("/assets/app-1a2b.js").await.unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert!(asset.headers()["content-type"].to_str().unwrap().contains("javascript"));
    assert!(asset.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    // The client's own routes load on a reload.
    let deep = get("/orders/some-order").await.unwrap();
    assert_eq!(deep.status(), StatusCode::OK);
    assert!(deep.text().await.unwrap().contains("id=root"));
    // The API's answers are unchanged.
    let unknown = app.request(Method::GET, "/api/nope", None, None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    unknown.assert_error_shape();
    assert_eq!(app.request(Method::GET, "/api/tickets", None, None).await.status, StatusCode::OK);
    // So are the bundled registry's, on the same port (as in `ticketing up`).
    let subjects = get("/subjects").await.unwrap();
    assert_eq!(subjects.status(), StatusCode::OK);
    assert!(subjects.headers()["content-type"].to_str().unwrap().contains("schemaregistry"));
    app.stop().await;

    // Not built: `/` says how to build it.
    let app = Deployment::new(&broker).await.spawn_with(|s| s.web_dir = "/nonexistent/web/dist".into()).await;
    let page = app.client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.text().await.unwrap().contains("npm --prefix web ci"));
    app.stop().await;
}
