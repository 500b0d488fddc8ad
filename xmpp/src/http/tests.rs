//! The auth rules of the whole router, driven with `oneshot` (no sockets):
//! every admin page and API refuses without a login, cookie changes need
//! the CSRF token, Basic works without one, only admins get in, and failed
//! logins are rate-limited per address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use starling_core::cluster::{Cluster, LocalOnly, MemberRow, PeerState};
use starling_core::config::Config;
use starling_core::shutdown::Shutdown;
use tower::ServiceExt;

use super::{ClientAddr, HttpState, app};
use crate::server::Server;

const ADMIN: (&str, &str) = ("root", "root-password");
const USER: (&str, &str) = ("plain", "plain-password");

/// Every route that needs an admin login, with a body that would be valid.
const PROTECTED: &[(&str, &str, &str)] = &[
    ("GET", "/api/session", ""),
    ("GET", "/api/cluster", ""),
    ("GET", "/api/caches", ""),
    ("POST", "/api/caches/users/clear", ""),
    ("GET", "/api/sessions?search=a&limit=5", ""),
    (
        "POST",
        "/api/sessions/kick",
        r#"{"jid":"plain@localhost/r"}"#,
    ),
    ("GET", "/api/users", ""),
    (
        "POST",
        "/api/users",
        r#"{"username":"eve","password":"x","admin":true}"#,
    ),
    ("DELETE", "/api/users/plain", ""),
    ("POST", "/api/users/plain/password", r#"{"password":"x"}"#),
    (
        "POST",
        "/api/messages",
        r#"{"to":"plain@localhost","body":"hi"}"#,
    ),
    ("GET", "/api/no-such-route", ""),
];

struct Fixture {
    router: Router,
    server: Arc<Server>,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(configure: impl FnOnce(&mut Config)) -> Fixture {
    use rand::RngExt;
    let suffix: u64 = rand::rng().random();
    let dir = std::env::temp_dir().join(format!("starling-http-{suffix:016x}"));
    let mut config = Config::defaults();
    config.server.data_dir = dir.clone();
    config.storage.url = format!("sqlite://{}", dir.join("starling.db").display());
    configure(&mut config);
    let cluster: Arc<dyn Cluster> = Arc::new(LocalOnly::with_identity(MemberRow {
        id: 0,
        name: "node1".into(),
        cluster_addr: String::new(),
        c2s_addr: config.c2s.bind.to_string(),
        http_addr: config.http.bind.to_string(),
        web_url: config.http.advertised_url(),
        max_connections: 0,
        incarnation: 0,
        joined_at_ms: 0,
        member: true,
        senior: true,
        state: PeerState::Up,
        sessions: 0,
        client_stanzas: 0,
        link: None,
        view_agrees: true,
    }));
    let server = Server::new(config, cluster, Shutdown::new())
        .await
        .expect("server");
    server.users.create(ADMIN.0, ADMIN.1, true).await.unwrap();
    server.users.create(USER.0, USER.1, false).await.unwrap();
    let router = app(HttpState::new(server.clone()));
    Fixture {
        router,
        server,
        dir,
    }
}

fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .extension(ConnectInfo(ClientAddr::plain(SocketAddr::from((
            [192, 0, 2, 1],
            4000,
        )))))
}

fn with_body(builder: axum::http::request::Builder, body: &str) -> Request<Body> {
    if body.is_empty() {
        builder.body(Body::empty()).unwrap()
    } else {
        builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> Response {
        self.router.clone().oneshot(request).await.unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut builder = request(method, uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(with_body(builder, body)).await
    }

    /// Logs in through the form; returns the session cookie and its CSRF token.
    async fn login(&self, user: &str, password: &str) -> (String, String) {
        let (cookie, token) = self.login_form().await;
        let response = self.post_login(&cookie, &token, user, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/admin");
        let session = set_cookie(&response, super::SESSION_COOKIE).expect("session cookie");
        let cookie = format!("{}={session}", super::SESSION_COOKIE);
        let response = self
            .call("GET", "/api/session", "", &[("cookie", &cookie)])
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let json = json(response).await;
        assert_eq!(json["user"], user);
        (cookie, json["csrf"].as_str().unwrap().to_owned())
    }

    /// The login form's pre-session cookie (as a `Cookie` header) and token.
    async fn login_form(&self) -> (String, String) {
        let response = self.call("GET", "/admin/login", "", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let login = set_cookie(&response, super::LOGIN_COOKIE).expect("login cookie");
        let html = text(response).await;
        let token = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a csrf field")
            .to_owned();
        (format!("{}={login}", super::LOGIN_COOKIE), token)
    }

    async fn post_login(&self, cookie: &str, token: &str, user: &str, password: &str) -> Response {
        let form = format!("username={user}&password={password}&csrf={token}");
        let request = request("POST", "/admin/login")
            .header("cookie", cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        self.send(request).await
    }
}

fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn json(response: Response) -> serde_json::Value {
    serde_json::from_str(&text(response).await).unwrap()
}

/// A refusal of an API call: 401 with a JSON error and nothing else.
async fn assert_api_refused(response: Response, what: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let body = json(response).await;
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{what}: {body}");
}

#[tokio::test]
async fn every_api_route_refuses_without_a_login() {
    let fx = fixture(|_| {}).await;
    let wrong = basic(ADMIN.0, "wrong");
    let garbage = "Basic !!!".to_owned();
    for (method, uri, body) in PROTECTED {
        let what = format!("{method} {uri}");
        assert_api_refused(fx.call(method, uri, body, &[]).await, &what).await;
        let forged = format!("{}={}", super::SESSION_COOKIE, "a".repeat(64));
        assert_api_refused(
            fx.call(method, uri, body, &[("cookie", &forged)]).await,
            &what,
        )
        .await;
        assert_api_refused(
            fx.call(method, uri, body, &[("authorization", &wrong)])
                .await,
            &what,
        )
        .await;
        assert_api_refused(
            fx.call(method, uri, body, &[("authorization", &garbage)])
                .await,
            &what,
        )
        .await;
    }
    // Nothing was changed by any of these.
    assert!(fx.server.users.get("plain").await.unwrap().is_some());
    assert!(fx.server.users.get("eve").await.unwrap().is_none());
}

#[tokio::test]
async fn admin_pages_send_a_visitor_to_the_login_form() {
    let fx = fixture(|_| {}).await;
    for uri in [
        "/admin",
        "/admin/",
        "/admin/anything",
        "/admin/assets/nothing.js",
    ] {
        let response = fx.call("GET", uri, "", &[]).await;
        if uri == "/admin/assets/nothing.js" {
            // Assets are public; an unknown one is simply missing.
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
            continue;
        }
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(
            response.headers()[header::LOCATION],
            "/admin/login",
            "{uri}"
        );
        assert!(text(response).await.is_empty(), "{uri}");
    }
    for asset in ["admin.css", "admin.js", "favicon.svg"] {
        let response = fx
            .call("GET", &format!("/admin/assets/{asset}"), "", &[])
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
    let response = fx
        .call(
            "GET",
            "/admin",
            "",
            &[("authorization", &basic(ADMIN.0, ADMIN.1))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
}

#[tokio::test]
async fn cookie_changes_need_the_csrf_token() {
    let fx = fixture(|_| {}).await;
    let (cookie, csrf) = fx.login(ADMIN.0, ADMIN.1).await;
    let clear = "/api/caches/users/clear";
    let response = fx.call("POST", clear, "", &[("cookie", &cookie)]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = fx
        .call(
            "POST",
            clear,
            "",
            &[("cookie", &cookie), ("x-csrf-token", &"0".repeat(64))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = r#"{"username":"eve","password":"x","admin":true}"#;
    let response = fx
        .call("POST", "/api/users", body, &[("cookie", &cookie)])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(fx.server.users.get("eve").await.unwrap().is_none());
    let response = fx
        .call("DELETE", "/api/users/plain", "", &[("cookie", &cookie)])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(fx.server.users.get("plain").await.unwrap().is_some());

    // Reads need no token; changes with it go through.
    let response = fx
        .call("GET", "/api/caches", "", &[("cookie", &cookie)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = fx
        .call(
            "POST",
            clear,
            "",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = fx
        .call(
            "POST",
            "/api/users",
            body,
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // A change another site's page asks for is refused even with the token.
    let response = fx
        .call(
            "POST",
            clear,
            "",
            &[
                ("cookie", &cookie),
                ("x-csrf-token", &csrf),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Logout is a change too.
    let logout = |form: String| {
        request("POST", "/admin/logout")
            .header("cookie", &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap()
    };
    let response = fx.send(logout(String::new())).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = fx.send(logout(format!("csrf={csrf}"))).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/admin/login");
    let response = fx
        .call("GET", "/api/session", "", &[("cookie", &cookie)])
        .await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the session ended"
    );
}

#[tokio::test]
async fn the_login_form_needs_its_own_token() {
    let fx = fixture(|_| {}).await;
    let (cookie, token) = fx.login_form().await;
    let response = fx.post_login(&cookie, "", ADMIN.0, ADMIN.1).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&response, super::SESSION_COOKIE).is_none());
    let (other_cookie, _) = fx.login_form().await;
    let response = fx.post_login(&other_cookie, &token, ADMIN.0, ADMIN.1).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a token belongs to its cookie"
    );
    let response = fx.post_login(&cookie, &token, ADMIN.0, ADMIN.1).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn basic_works_without_a_csrf_token() {
    let fx = fixture(|_| {}).await;
    let auth = basic(ADMIN.0, ADMIN.1);
    let response = fx
        .call("GET", "/api/session", "", &[("authorization", &auth)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["user"], ADMIN.0);
    let response = fx
        .call(
            "POST",
            "/api/users/plain/password",
            r#"{"password":"new-one"}"#,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        fx.server
            .users
            .authenticate(USER.0, "new-one")
            .await
            .unwrap()
            .is_some()
    );
    // A script (no Sec-Fetch headers) is asked for Basic; the page's own
    // fetches are not, so the browser shows no password dialog.
    let response = fx.call("GET", "/api/cluster", "", &[]).await;
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    let response = fx
        .call("GET", "/api/cluster", "", &[("sec-fetch-mode", "cors")])
        .await;
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn accounts_without_the_admin_flag_are_refused_like_a_wrong_password() {
    let fx = fixture(|_| {}).await;
    let response = fx
        .call(
            "GET",
            "/api/session",
            "",
            &[("authorization", &basic(USER.0, USER.1))],
        )
        .await;
    assert_api_refused(response, "plain user over Basic").await;
    let (cookie, token) = fx.login_form().await;
    let refused = fx.post_login(&cookie, &token, USER.0, USER.1).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&refused, super::SESSION_COOKIE).is_none());
    let refused = text(refused).await;
    let wrong = fx.post_login(&cookie, &token, ADMIN.0, "wrong").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = text(wrong).await;
    assert!(refused.contains("Wrong username or password."));
    assert_eq!(
        refused.replace(USER.0, ""),
        wrong.replace(ADMIN.0, ""),
        "the same page"
    );
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_address() {
    let fx = fixture(|config| {
        config.limits.auth_failures_per_ip = 3;
    })
    .await;
    let wrong = basic(ADMIN.0, "wrong");
    for _ in 0..3 {
        let response = fx
            .call("GET", "/api/session", "", &[("authorization", &wrong)])
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits, over Basic and on the form.
    let right = basic(ADMIN.0, ADMIN.1);
    let response = fx
        .call("GET", "/api/session", "", &[("authorization", &right)])
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let (cookie, token) = fx.login_form().await;
    let response = fx.post_login(&cookie, &token, ADMIN.0, ADMIN.1).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie(&response, super::SESSION_COOKIE).is_none());
    assert!(text(response).await.contains("Too many failed logins"));

    // Another address is not affected.
    let request = Request::builder()
        .uri("/api/session")
        .header("authorization", &right)
        .extension(ConnectInfo(ClientAddr::plain(SocketAddr::from((
            [192, 0, 2, 2],
            4000,
        )))))
        .body(Body::empty())
        .unwrap();
    assert_eq!(fx.send(request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_and_lb_are_public_and_metrics_can_be_turned_off() {
    let fx = fixture(|_| {}).await;
    let response = fx.call("GET", "/metrics", "", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = text(response).await;
    assert!(
        plain.contains("\n# TYPE starling_sessions gauge\n"),
        "{plain}"
    );
    assert!(
        plain.contains("\n# TYPE starling_logins_total counter\n"),
        "{plain}"
    );
    assert!(!plain.contains("# EOF"), "{plain}");
    let accept = [("accept", "application/openmetrics-text; version=1.0.0")];
    let response = fx.call("GET", "/metrics", "", &accept).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let open = text(response).await;
    assert!(
        open.contains("\n# TYPE starling_logins counter\n"),
        "{open}"
    );
    assert!(open.contains("\nstarling_logins_total 0\n"), "{open}");
    assert!(open.ends_with("\n# EOF\n"), "{open}");
    let response = fx.call("GET", "/lb/plain", "", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["node"], "node1");
    let off = fixture(|config| config.http.metrics = false).await;
    let response = off.call("GET", "/metrics", "", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let elsewhere = fixture(|config| config.http.metrics_bind = "127.0.0.1:0".into()).await;
    let response = elsewhere.call("GET", "/metrics", "", &[]).await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "served on its own address"
    );
}
