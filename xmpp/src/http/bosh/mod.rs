//! XEP-0124 BOSH carrying XEP-0206 XMPP at `/http-bind`.
//!
//! - `body`: the `<body/>` wrapper, parsed and written.
//! - `session`: the request window, held requests and timeouts of one
//!   session, in front of an ordinary c2s connection (through a pipe, as
//!   for WebSocket): negotiation and the session are the TCP code's.
//!
//! Security and origins follow the WebSocket endpoint: a session counts as
//! encrypted when the listener runs TLS, plain HTTP needs
//! `[c2s] allow_plain_without_tls`, and `[http] allowed_origins` decides
//! which pages may call it (CORS).

mod body;
mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use self::body::{BodyError, Kind};
pub use self::session::BoshSessions;
use self::session::Receipt;
use super::HttpState;
use super::listener::ClientAddr;
use super::origin;
use crate::balance::WebEndpoint;
use crate::stream::Limits;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/http-bind", post(endpoint).options(preflight).get(usage))
        .route("/http-bind/", post(endpoint).options(preflight).get(usage))
}

async fn usage() -> Response {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        "POST BOSH <body/> requests here (XEP-0124, XEP-0206)",
    )
}

/// CORS preflight for a cross-origin page.
async fn preflight(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = origin::refusal(&state.server.config.http, &headers) {
        return refusal;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    origin::add_cors(&headers, &mut response);
    response
}

async fn endpoint(State(state): State<HttpState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some(refusal) = origin::refusal(&state.server.config.http, &parts.headers) {
        return refusal;
    }
    let peer = parts.extensions.get::<ConnectInfo<ClientAddr>>().map_or(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        |ConnectInfo(ClientAddr { addr, .. })| *addr,
    );
    let limits = Limits {
        // A body holds a few stanzas; each is checked again by the session.
        max_stanza_size: state.server.limits().max_stanza_size.saturating_mul(4),
        max_depth: state.server.limits().max_depth + 1,
    };
    let mut response = match axum::body::to_bytes(body, limits.max_stanza_size).await {
        Ok(bytes) => handle(&state, peer, &bytes, limits).await,
        Err(_) => xml(
            StatusCode::PAYLOAD_TOO_LARGE,
            body::terminate(Some("policy-violation"), &[]),
        ),
    };
    origin::add_cors(&parts.headers, &mut response);
    response
}

async fn handle(state: &HttpState, peer: SocketAddr, bytes: &[u8], limits: Limits) -> Response {
    let request = match body::parse(bytes, limits) {
        Ok(request) => request,
        Err(BodyError::BadRequest(text)) => {
            tracing::debug!(%peer, %text, "bad BOSH request");
            return xml(
                StatusCode::BAD_REQUEST,
                body::terminate(Some("bad-request"), &[]),
            );
        }
        Err(BodyError::Frame(error)) => {
            tracing::debug!(%peer, %error, "bad BOSH body");
            return xml(
                StatusCode::BAD_REQUEST,
                body::terminate(Some("bad-request"), &[]),
            );
        }
    };
    let session = match (&request.kind, &request.sid) {
        (Kind::Create { wait, hold, .. }, _) => {
            let server = &state.server;
            let secure = server.config.http.tls;
            if !secure && !server.config.c2s.allow_plain_without_tls {
                return text(
                    StatusCode::FORBIDDEN,
                    "BOSH needs HTTPS on this node ([http] tls = true)",
                );
            }
            // The permit is held for the session's life. A full node names
            // a member with room (XEP-0124's terminal condition
            // see-other-uri).
            let permit = match super::admit(server, peer, WebEndpoint::Bosh) {
                Ok(permit) => permit,
                Err(super::Refusal {
                    see_other: Some(other),
                    ..
                }) => return xml(StatusCode::OK, body::see_other_uri(&other)),
                Err(refusal) => return text(refusal.status, refusal.reason),
            };
            let config = &server.config.bosh;
            let wait = Duration::from_secs(
                wait.unwrap_or(config.max_wait_secs)
                    .min(config.max_wait_secs),
            );
            let hold = hold.unwrap_or(1).min(config.max_hold) as usize;
            state
                .bosh
                .create(server, peer, secure, (wait, hold), request.rid, permit)
        }
        (_, Some(sid)) => match state.bosh.get(sid) {
            Some(session) => session,
            None => {
                return xml(
                    StatusCode::NOT_FOUND,
                    body::terminate(Some("item-not-found"), &[]),
                );
            }
        },
        (_, None) => {
            return xml(
                StatusCode::BAD_REQUEST,
                body::terminate(Some("bad-request"), &[]),
            );
        }
    };
    let answer = match session.receive(request) {
        Receipt::Now(answer) => answer,
        Receipt::Later(rid, mut receiver) => {
            match tokio::time::timeout(session.wait, &mut receiver).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => body::terminate(None, &[]),
                Err(_) => match session.expire(rid) {
                    Some(answer) => answer,
                    // Answered while it expired: that answer it is.
                    None => receiver
                        .await
                        .unwrap_or_else(|_| body::terminate(None, &[])),
                },
            }
        }
    };
    xml(StatusCode::OK, answer)
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn text(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
