//! Which web pages may use the node's XMPP endpoints (WebSocket, BOSH):
//! the `Origin` check and the CORS answer, from `[http] allowed_origins`.
//!
//! - empty (the default): same origin only — a page served by this
//!   listener (the `Origin` names the request's `Host`);
//! - `["*"]`: any page;
//! - otherwise the listed origins (`https://chat.example.com`), and the
//!   same origin.
//!
//! Requests without `Origin` are not from a browser page and pass: the check
//! protects browser users from other sites, not the server from clients.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use starling_core::config::HttpConfig;

/// None: the request may go on; Some: the refusal to send.
pub(super) fn refusal(config: &HttpConfig, headers: &HeaderMap) -> Option<Response> {
    match headers.get(header::ORIGIN) {
        None => None,
        Some(origin) if allowed(config, origin, headers) => None,
        Some(_) => Some(
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "This origin may not use this server's XMPP endpoints ([http] allowed_origins)",
            )
                .into_response(),
        ),
    }
}

fn allowed(config: &HttpConfig, origin: &HeaderValue, headers: &HeaderMap) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if config
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_scheme, rest)| rest);
    matches!((origin_host, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

/// Adds the CORS headers for an allowed cross-origin request.
pub(super) fn add_cors(headers_in: &HeaderMap, response: &mut Response) {
    let Some(origin) = headers_in.get(header::ORIGIN) else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    for (name, value) in [
        (header::VARY, "Origin"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"),
        (header::ACCESS_CONTROL_MAX_AGE, "86400"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, origin.parse().unwrap());
        headers.insert(header::HOST, host.parse().unwrap());
        headers
    }

    fn config(origins: &[&str]) -> HttpConfig {
        HttpConfig {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn same_origin_by_default() {
        let default = config(&[]);
        let same = request("http://chat.example:5280", "chat.example:5280");
        assert!(refusal(&default, &same).is_none());
        let other = request("https://evil.example", "chat.example:5280");
        assert!(refusal(&default, &other).is_some());
        assert!(refusal(&default, &HeaderMap::new()).is_none());
    }

    #[test]
    fn listed_origins_and_any() {
        let listed = config(&["https://web.example"]);
        assert!(refusal(&listed, &request("https://web.example", "xmpp.example")).is_none());
        assert!(refusal(&listed, &request("https://evil.example", "xmpp.example")).is_some());
        let any = config(&["*"]);
        assert!(refusal(&any, &request("https://evil.example", "xmpp.example")).is_none());
    }
}
