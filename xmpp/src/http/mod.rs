//! The HTTP side of a node: the admin page, the JSON APIs, `/metrics` and
//! the load balancer's `/lb/{username}`.
//!
//! ```text
//!  /admin, /admin/login, /admin/logout, /admin/assets/*   admin.rs, auth.rs
//!  /api/session, /api/cluster, /api/caches, /api/sessions,
//!  /api/users, /api/messages                             api/ (admin login)
//!  /metrics                                               metrics.rs (public)
//!  /lb/{username}                                         lb.rs (public)
//!  /cometd, /cometd/{*path}                               cometd/ (Bayeux)
//!  /xmpp-websocket                                        websocket.rs (RFC 7395)
//!  /.well-known/host-meta, /.well-known/host-meta.json    host_meta.rs (XEP-0156)
//!  /http-bind                                             bosh/ (XEP-0124, XEP-0206)
//!  /chat, /chat/start.js, /chat/dist/*                     chat.rs (Converse.js, optional)
//! ```
//!
//! [`app`] builds the router over an [`HttpState`]; [`serve`] runs it on a
//! bound listener, over TLS when `[http] tls` is on, until the node stops.
//! Every handler's failure is an [`HttpError`], turned into a response in
//! one place.

mod admin;
mod api;
pub(crate) mod auth;
mod bosh;
mod chat;
mod cometd;
mod error;
mod host_meta;
mod lb;
mod listener;
mod metrics;
mod origin;
pub(crate) mod prometheus;
#[cfg(test)]
mod tests;
mod websocket;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use starling_core::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use self::auth::{AdminSessions, LOGIN_COOKIE, SESSION_COOKIE};
pub use self::bosh::BoshSessions;
pub use self::cometd::{Bayeux, BayeuxCounters};
pub use self::error::HttpError;
pub use self::listener::ClientAddr;
use crate::server::Server;

/// What every handler shares: the node, and the admin logins made here.
/// Why a web transport turns a new client away, and where a full node
/// sends it instead (a member with room, if one has).
pub(crate) struct Refusal {
    pub(crate) status: axum::http::StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) see_other: Option<String>,
}

/// The checks a new BOSH or WebSocket client passes, the same as a TCP
/// client: the rate of new connections from its address, then the node's
/// connection cap, whose permit the session holds for its life. Counts the
/// connection accepted, and refused when it is turned away.
pub(crate) fn admit(
    server: &crate::server::Server,
    peer: std::net::SocketAddr,
    endpoint: crate::balance::WebEndpoint,
) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
    use axum::http::StatusCode;
    crate::metrics::incr(&server.metrics.connections_accepted);
    if !server
        .ip_limits
        .allow_connection(peer.ip(), tokio::time::Instant::now().into_std())
    {
        crate::metrics::incr(&server.metrics.connections_refused);
        return Err(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            reason: "Too many new connections from your address; try again later",
            see_other: None,
        });
    }
    server
        .connection_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            crate::metrics::incr(&server.metrics.connections_refused);
            Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: "This server has reached its connection limit",
                see_other: crate::balance::see_other_uri(server, endpoint),
            }
        })
}

#[derive(Clone)]
pub struct HttpState {
    pub server: Arc<Server>,
    pub admin: Arc<AdminSessions>,
    pub counters: Arc<HttpCounters>,
    /// The Bayeux server at `/cometd`.
    pub cometd: Arc<Bayeux>,
    /// The BOSH sessions at `/http-bind`.
    pub bosh: Arc<BoshSessions>,
}

/// Counters of the HTTP side itself, on `/metrics`.
#[derive(Debug, Default)]
pub struct HttpCounters {
    pub admin_logins: AtomicU64,
    pub admin_login_failures: AtomicU64,
    pub messages_sent: AtomicU64,
}

impl HttpState {
    pub fn new(server: Arc<Server>) -> HttpState {
        HttpState {
            admin: Arc::new(AdminSessions::new(auth::SESSION_IDLE)),
            counters: Arc::default(),
            cometd: Bayeux::new(server.clone()),
            bosh: Arc::default(),
            server,
        }
    }

    /// Cookies get `Secure` when the pages are served over TLS.
    fn secure_cookies(&self) -> bool {
        self.server.config.http.tls
    }
}

/// Every route of the node's HTTP listener.
pub fn app(state: HttpState) -> Router {
    let http = &state.server.config.http;
    let mut router = Router::new()
        .route("/admin", get(admin::page))
        .route("/admin/login", get(admin::login_form).post(auth::login))
        .route("/admin/logout", post(auth::logout))
        .route("/admin/assets/{file}", get(admin::asset))
        .nest("/api", api::routes())
        .route("/lb/{username}", get(lb::answer))
        .merge(cometd::routes())
        .merge(bosh::routes())
        .route("/xmpp-websocket", any(websocket::endpoint))
        .route("/.well-known/host-meta", get(host_meta::xrd))
        .route("/.well-known/host-meta.json", get(host_meta::json));
    if http.chat_page {
        router = router.merge(chat::routes());
    }
    if http.metrics && http.metrics_addr().is_none() {
        router = router.route("/metrics", get(metrics::render));
    }
    router
        .fallback(admin::not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The router of a separate metrics listener (`[http] metrics_bind`).
pub fn metrics_app(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .with_state(state)
}

/// Headers every answer carries: no sniffing, no referrer beyond this
/// origin, no caching of API data; pages may not be framed or run
/// scripts from elsewhere.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    // A page may set its own policy (/chat); the default is the strict one.
    if is_html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                 form-action 'self'",
            ),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Serves `router` on `listener` (TLS when `tls` is given) until `shutdown`
/// fires, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let service = router.into_make_service_with_connect_info::<ClientAddr>();
    let stop = shutdown.clone().cancelled_owned();
    match tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(acceptor) => {
            let listener = listener::TlsListener::new(listener, acceptor, shutdown);
            axum::serve(listener, service)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}
