//! XEP-0156 discovery: `/.well-known/host-meta` (XRD) and
//! `/.well-known/host-meta.json` name this listener's WebSocket and BOSH
//! endpoints, so web clients find them from the domain alone.
//!
//! The base URL is `[http] public_url` when set (what clients reach behind
//! a proxy), otherwise the request's `Host` with this listener's scheme.
//! Any page may read it (`Access-Control-Allow-Origin: *`): it is public.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use starling_core::config::HttpConfig;
use starling_core::xml::escape;

use super::HttpState;

pub(super) const WEBSOCKET_REL: &str = "urn:xmpp:alt-connections:websocket";
pub(super) const BOSH_REL: &str = "urn:xmpp:alt-connections:xbosh";

pub(super) async fn xrd(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let (websocket, bosh) = endpoints(&state.server.config.http, &headers);
    let body = format!(
        "<?xml version='1.0' encoding='utf-8'?>\n\
         <XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
         <Link rel='{WEBSOCKET_REL}' href='{}'/>\n  \
         <Link rel='{BOSH_REL}' href='{}'/>\n\
         </XRD>\n",
        escape(&websocket),
        escape(&bosh)
    );
    public(body, "application/xrd+xml; charset=utf-8")
}

pub(super) async fn json(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let (websocket, bosh) = endpoints(&state.server.config.http, &headers);
    let body = serde_json::json!({
        "links": [
            {"rel": WEBSOCKET_REL, "href": websocket},
            {"rel": BOSH_REL, "href": bosh},
        ]
    });
    public(body.to_string(), "application/json")
}

fn public(body: String, content_type: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The WebSocket and BOSH URLs of this listener.
fn endpoints(config: &HttpConfig, headers: &HeaderMap) -> (String, String) {
    let base = base_url(config, headers);
    let websocket_base = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => base.clone(),
    };
    (
        format!("{websocket_base}/xmpp-websocket"),
        format!("{base}/http-bind"),
    )
}

fn base_url(config: &HttpConfig, headers: &HeaderMap) -> String {
    if !config.public_url.is_empty() {
        return config.public_url.trim_end_matches('/').to_owned();
    }
    let scheme = if config.tls { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        // Only a host[:port]: a crafted Host must not become a path or a second URL.
        .filter(|host| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map_or_else(|| config.bind.to_string(), str::to_owned);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_scheme_and_the_public_url() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "chat.example:5280".parse().unwrap());
        let mut config = HttpConfig::default();
        assert_eq!(
            endpoints(&config, &headers),
            (
                "ws://chat.example:5280/xmpp-websocket".into(),
                "http://chat.example:5280/http-bind".into()
            )
        );
        config.tls = true;
        assert_eq!(
            endpoints(&config, &headers).0,
            "wss://chat.example:5280/xmpp-websocket"
        );
        config.public_url = "https://xmpp.example/".into();
        assert_eq!(
            endpoints(&config, &headers),
            (
                "wss://xmpp.example/xmpp-websocket".into(),
                "https://xmpp.example/http-bind".into()
            )
        );
        headers.insert(header::HOST, "evil/x?".parse().unwrap());
        config.public_url.clear();
        assert!(
            endpoints(&config, &headers)
                .1
                .starts_with("https://127.0.0.1:5280/")
        );
    }
}
