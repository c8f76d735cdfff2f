//! The public API as a client sees it, with the route table that sends each route to the
//! component serving it (one origin by default, like `ticketing up` or an ingress).

use std::str::FromStr;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// Which component serves a route, for `--route GROUP=URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// `/api/users/*`.
    Users,
    /// `POST /api/tickets`, `PUT /api/tickets/:id`.
    Tickets,
    /// `POST /api/orders`, `DELETE /api/orders/:id`.
    Orders,
    /// `POST /api/payments`.
    Payments,
    /// Every `GET` under `/api/tickets` and `/api/orders`.
    Query,
}

impl RouteGroup {
    const NAMES: [(&'static str, RouteGroup); 5] = [
        ("users", RouteGroup::Users),
        ("tickets", RouteGroup::Tickets),
        ("orders", RouteGroup::Orders),
        ("payments", RouteGroup::Payments),
        ("query", RouteGroup::Query),
    ];
}

/// Base URLs per route group.
#[derive(Debug, Clone)]
pub struct Targets {
    default: String,
    overrides: Vec<(RouteGroup, String)>,
}

impl Targets {
    /// Every route to `base` (e.g. `http://127.0.0.1:8080`).
    pub fn single(base: &str) -> Self {
        Self { default: base.trim_end_matches('/').to_string(), overrides: Vec::new() }
    }

    /// Sends `group` to `base` instead.
    pub fn route(mut self, group: RouteGroup, base: &str) -> Self {
        self.overrides.retain(|(g, _)| *g != group);
        self.overrides.push((group, base.trim_end_matches('/').to_string()));
        self
    }

    /// Adds a `GROUP=URL` override as the `--route` flag gives it.
    pub fn parse_route(self, flag: &str) -> anyhow::Result<Self> {
        let (name, url) = flag
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--route {flag:?}: expected GROUP=URL, e.g. query=http://127.0.0.1:8081"))?;
        let group = RouteGroup::NAMES
            .iter()
            .find(|(known, _)| *known == name.trim())
            .map(|(_, g)| *g)
            .ok_or_else(|| anyhow::anyhow!("--route {flag:?}: unknown group; known: users, tickets, orders, payments, query"))?;
        reqwest::Url::from_str(url.trim()).map_err(|e| anyhow::anyhow!("--route {flag:?}: bad URL: {e}"))?;
        Ok(self.route(group, url.trim()))
    }

    /// The base URL serving `group`.
    pub fn base(&self, group: RouteGroup) -> &str {
        self.overrides.iter().find(|(g, _)| *g == group).map(|(_, b)| b.as_str()).unwrap_or(&self.default)
    }
}

/// A session cookie as the API sets it (`express:sess=…`).
#[derive(Debug, Clone)]
pub struct Session(String);

/// An HTTP answer, with what the load generator reads off it.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: bytes::Bytes,
    /// `X-Consistency-Token` of a command's answer.
    pub consistency_token: Option<String>,
    /// `X-Consistency: stale` on a query that gave up waiting for its token.
    pub stale: bool,
    /// Session cookie set by sign-up or sign-in.
    pub session: Option<Session>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A string field of a JSON object body.
    pub fn field(&self, name: &str) -> Option<String> {
        self.json().get(name).and_then(Value::as_str).map(str::to_string)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The public API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    targets: Targets,
}

impl ApiClient {
    /// A client with keep-alive connections and a per-request `timeout`.
    pub fn new(targets: Targets, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(4096)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { http, targets })
    }

    fn request(&self, method: Method, group: RouteGroup, path: &str, session: Option<&Session>) -> RequestBuilder {
        let url = format!("{}{}", self.targets.base(group), path);
        let request = self.http.request(method, url);
        match session {
            Some(Session(cookie)) => request.header(reqwest::header::COOKIE, cookie),
            None => request,
        }
    }

    async fn send(request: RequestBuilder) -> reqwest::Result<Answer> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let consistency_token = header("x-consistency-token");
        let stale = header("x-consistency").is_some_and(|v| v == "stale");
        let session = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("express:sess="))
            .and_then(|v| v.split(';').next())
            .map(|pair| Session(pair.to_string()));
        let body = response.bytes().await?;
        Ok(Answer { status, body, consistency_token, stale, session })
    }

    /// `POST /api/users/signup`.
    pub async fn signup(&self, email: &str, password: &str) -> reqwest::Result<Answer> {
        let body = json!({ "email": email, "password": password });
        Self::send(self.request(Method::POST, RouteGroup::Users, "/api/users/signup", None).json(&body)).await
    }

    /// `POST /api/users/signin`.
    pub async fn signin(&self, email: &str, password: &str) -> reqwest::Result<Answer> {
        let body = json!({ "email": email, "password": password });
        Self::send(self.request(Method::POST, RouteGroup::Users, "/api/users/signin", None).json(&body)).await
    }

    /// `GET /api/tickets`.
    pub async fn list_tickets(&self) -> reqwest::Result<Answer> {
        Self::send(self.request(Method::GET, RouteGroup::Query, "/api/tickets", None)).await
    }

    /// `GET /api/tickets/:id`, waiting for `token` when given.
    pub async fn show_ticket(&self, id: &str, token: Option<&str>) -> reqwest::Result<Answer> {
        let mut request = self.request(Method::GET, RouteGroup::Query, &format!("/api/tickets/{id}"), None);
        if let Some(token) = token {
            request = request.header("x-consistency-token", token);
        }
        Self::send(request).await
    }

    /// `POST /api/tickets`.
    pub async fn create_ticket(&self, session: &Session, title: &str, price: f64) -> reqwest::Result<Answer> {
        let body = json!({ "title": title, "price": price });
        Self::send(self.request(Method::POST, RouteGroup::Tickets, "/api/tickets", Some(session)).json(&body)).await
    }

    /// `PUT /api/tickets/:id`.
    pub async fn update_ticket(&self, session: &Session, id: &str, title: &str, price: f64) -> reqwest::Result<Answer> {
        let body = json!({ "title": title, "price": price });
        let path = format!("/api/tickets/{id}");
        Self::send(self.request(Method::PUT, RouteGroup::Tickets, &path, Some(session)).json(&body)).await
    }

    /// `POST /api/orders`.
    pub async fn create_order(&self, session: &Session, ticket_id: &str) -> reqwest::Result<Answer> {
        let body = json!({ "ticketId": ticket_id });
        Self::send(self.request(Method::POST, RouteGroup::Orders, "/api/orders", Some(session)).json(&body)).await
    }

    /// `GET /api/orders/:id`, waiting for `token` when given.
    pub async fn show_order(&self, session: &Session, id: &str, token: Option<&str>) -> reqwest::Result<Answer> {
        let mut request = self.request(Method::GET, RouteGroup::Query, &format!("/api/orders/{id}"), Some(session));
        if let Some(token) = token {
            request = request.header("x-consistency-token", token);
        }
        Self::send(request).await
    }

    /// `POST /api/payments` with the sandbox's paying token.
    pub async fn pay(&self, session: &Session, order_id: &str) -> reqwest::Result<Answer> {
        let body = json!({ "token": "tok_visa", "orderId": order_id });
        Self::send(self.request(Method::POST, RouteGroup::Payments, "/api/payments", Some(session)).json(&body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_to_their_group_s_target_or_the_default() {
        let targets = Targets::single("http://a:1/")
            .parse_route("query=http://q:2")
            .unwrap()
            .parse_route("orders=http://o:3/")
            .unwrap();
        assert_eq!(targets.base(RouteGroup::Query), "http://q:2");
        assert_eq!(targets.base(RouteGroup::Orders), "http://o:3");
        assert_eq!(targets.base(RouteGroup::Users), "http://a:1");
        assert!(Targets::single("http://a").parse_route("nope=http://x").unwrap_err().to_string().contains("unknown group"));
        assert!(Targets::single("http://a").parse_route("query").unwrap_err().to_string().contains("GROUP=URL"));
    }
}
