//! Admin authentication for the pages and APIs: login sessions held in
//! memory on this node (cookie `starling_session`), HTTP Basic for
//! scripts (checked against the stored SCRAM credential, as SASL PLAIN
//! is), CSRF tokens, and the per-IP limit on failed logins shared with
//! c2s (`limits.auth_failures_per_ip`).
//!
//! Only accounts with the admin flag get in; any other account fails
//! exactly as a wrong password does.
//!
//! CSRF: a cookie-authenticated change (POST, PUT, PATCH, DELETE) must
//! carry the session's token in `X-CSRF-Token` (or, for the logout form, a
//! `csrf` field). The login form itself carries a token derived from a
//! pre-session cookie (`starling_login`) with a key only this node knows,
//! so no state is kept for visitors who never log in. Changes requested
//! by a browser page of another site (`Sec-Fetch-Site`) are refused
//! whatever the authentication.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use starling_core::jid::NodePart;
use subtle::ConstantTimeEq;

use super::listener::ClientAddr;
use super::{HttpError, HttpState};
use crate::metrics::incr;

/// The login session cookie.
pub const SESSION_COOKIE: &str = "starling_session";
/// The pre-session cookie the login form's CSRF token is bound to.
pub const LOGIN_COOKIE: &str = "starling_login";
/// Idle time after which a login session ends.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// How often a session's account is read again (a deleted or demoted
/// admin loses the session within this time on every node).
const RECHECK_AFTER: Duration = Duration::from_secs(30);
/// Sessions kept per node; beyond, the least recently used ones end.
const MAX_SESSIONS: usize = 10_000;

/// Random bytes, hex-encoded: session ids, CSRF tokens, login cookies.
fn random_token() -> String {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

struct AdminSession {
    user: String,
    csrf: String,
    last_seen: Instant,
    checked: Instant,
}

/// The admin logins made on this node.
pub struct AdminSessions {
    sessions: Mutex<HashMap<String, AdminSession>>,
    /// Keys the login form's CSRF token to its pre-session cookie.
    login_key: Hmac<Sha256>,
    idle: Duration,
}

/// A session found by its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionInfo {
    pub user: String,
    pub csrf: String,
    /// The account should be read again before it is trusted further.
    pub recheck: bool,
}

impl AdminSessions {
    pub(crate) fn new(idle: Duration) -> AdminSessions {
        use rand::RngExt;
        let key: [u8; 64] = rand::rng().random();
        AdminSessions {
            sessions: Mutex::new(HashMap::new()),
            login_key: <Hmac<Sha256> as KeyInit>::new(&key.into()),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AdminSession>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a session for `user`; returns its cookie value.
    pub(crate) fn create(&self, user: &str, now: Instant) -> String {
        let token = random_token();
        let mut sessions = self.lock();
        let idle = self.idle;
        sessions.retain(|_, session| now.duration_since(session.last_seen) < idle);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(token, _)| token.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            token.clone(),
            AdminSession {
                user: user.to_owned(),
                csrf: random_token(),
                last_seen: now,
                checked: now,
            },
        );
        token
    }

    /// The live session behind a cookie value, marked as used now.
    pub(crate) fn touch(&self, token: &str, now: Instant) -> Option<SessionInfo> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(token)?;
        if now.duration_since(session.last_seen) >= self.idle {
            sessions.remove(token);
            return None;
        }
        session.last_seen = now;
        let recheck = now.duration_since(session.checked) >= RECHECK_AFTER;
        Some(SessionInfo {
            user: session.user.clone(),
            csrf: session.csrf.clone(),
            recheck,
        })
    }

    /// The account behind a session was read and is still an admin.
    pub(crate) fn checked(&self, token: &str, now: Instant) {
        if let Some(session) = self.lock().get_mut(token) {
            session.checked = now;
        }
    }

    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Ends every session of `user` (account deleted or password changed here).
    pub(crate) fn remove_user(&self, user: &str) {
        self.lock().retain(|_, session| session.user != user);
    }

    /// The login form's CSRF token for a pre-session cookie.
    pub(crate) fn login_token(&self, login_cookie: &str) -> String {
        let mut mac = self.login_key.clone();
        mac.update(b"starling login form\0");
        mac.update(login_cookie.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    pub(crate) fn check_login_token(&self, login_cookie: &str, token: &str) -> bool {
        valid_cookie_value(login_cookie) && same(&self.login_token(login_cookie), token)
    }
}

/// Our cookie values are 64 lowercase hex digits; anything else is not ours.
pub(crate) fn valid_cookie_value(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// `Set-Cookie` for one of our cookies; `None` as value clears it.
pub(crate) fn set_cookie(name: &str, value: Option<&str>, path: &str, secure: bool) -> HeaderValue {
    let mut text = match value {
        Some(value) => format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict"),
        None => format!("{name}=; Path={path}; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    if secure {
        text.push_str("; Secure");
    }
    // Names, values and paths are ours (hex and fixed ASCII).
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `(user, password)` from `Authorization: Basic ...`; `None` when the
/// header is not Basic, `Some(Err)` when it is but is malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ());
    Some(decoded.and_then(|bytes| {
        let text = String::from_utf8(bytes).map_err(|_| ())?;
        let (user, password) = text.split_once(':').ok_or(())?;
        Ok((user.to_owned(), password.to_owned()))
    }))
}

/// Whether the request comes from a browser page's script, which must not
/// get a Basic challenge (the browser would pop up its password dialog
/// over the admin page).
fn from_page_script(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-mode")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|mode| mode != "navigate")
}

/// A browser says a page of another site asked for this request.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The username as the store keys it, or `None` when it cannot be one.
pub(crate) fn prepared_username(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() || name.contains(['@', '/']) {
        return None;
    }
    NodePart::new(name).ok().map(|node| node.to_string())
}

/// Checks an admin's password, counting failures against the client's
/// address. `Ok(Some(user))` only for an admin account with that password.
async fn verify_admin(
    state: &HttpState,
    ip: IpAddr,
    name: &str,
    password: &str,
) -> Result<Option<String>, HttpError> {
    let server = &state.server;
    let limits = &server.ip_limits;
    if !limits.may_authenticate(ip, Instant::now()) {
        return Err(too_many(state));
    }
    let record = match prepared_username(name) {
        Some(user) => server.users.authenticate(&user, password).await?,
        None => None,
    };
    match record {
        Some(record) if record.admin => Ok(Some(record.username)),
        _ => {
            limits.record_auth_failure(ip, Instant::now());
            incr(&state.counters.admin_login_failures);
            tracing::info!(%ip, user = name, "admin login refused");
            Ok(None)
        }
    }
}

fn too_many(state: &HttpState) -> HttpError {
    HttpError::TooManyAttempts {
        retry_after_secs: state.server.limits().auth_failure_window_secs,
    }
}

/// How a request proved it is an admin's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Via {
    Basic,
    Cookie { csrf: String },
}

/// An admin, authenticated for this request: the extractor every API
/// handler takes. Refuses with 401 (JSON), 403 (CSRF, cross-site) or 429.
#[derive(Debug, Clone)]
pub(crate) struct AdminUser {
    pub name: String,
    pub via: Via,
}

impl FromRequestParts<HttpState> for AdminUser {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, HttpError> {
        let challenge = !from_page_script(&parts.headers);
        let user = authenticate(parts, state)
            .await?
            .ok_or(HttpError::Unauthorized { challenge })?;
        if changes_state(&parts.method) {
            if cross_site(&parts.headers) {
                return Err(HttpError::CrossSite);
            }
            if let Via::Cookie { csrf } = &user.via {
                let sent = parts
                    .headers
                    .get("x-csrf-token")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                if !same(sent, csrf) {
                    return Err(HttpError::Csrf);
                }
            }
        }
        Ok(user)
    }
}

/// An admin on a page: like [`AdminUser`] but a missing login sends the
/// browser to the login form.
#[derive(Debug, Clone)]
pub(crate) struct AdminPage(pub AdminUser);

impl FromRequestParts<HttpState> for AdminPage {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, HttpError> {
        match authenticate(parts, state).await {
            Ok(Some(user)) => Ok(AdminPage(user)),
            Ok(None) => Err(HttpError::LoginPage),
            Err(error) => Err(error),
        }
    }
}

fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|ConnectInfo(ClientAddr { addr, .. })| addr.ip())
}

/// The admin behind the request's Basic credentials or session cookie.
async fn authenticate(parts: &Parts, state: &HttpState) -> Result<Option<AdminUser>, HttpError> {
    if let Some(credentials) = basic_credentials(&parts.headers) {
        let Ok((name, password)) = credentials else {
            return Ok(None);
        };
        // Every connection has its address; a request without one is refused.
        let Some(ip) = client_ip(parts) else {
            return Ok(None);
        };
        let user = verify_admin(state, ip, &name, &password).await?;
        return Ok(user.map(|name| AdminUser {
            name,
            via: Via::Basic,
        }));
    }
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| valid_cookie_value(t))
    else {
        return Ok(None);
    };
    let now = Instant::now();
    let Some(session) = state.admin.touch(token, now) else {
        return Ok(None);
    };
    if session.recheck {
        let still_admin = state
            .server
            .users
            .get(&session.user)
            .await?
            .is_some_and(|record| record.admin);
        if !still_admin {
            state.admin.remove(token);
            return Ok(None);
        }
        state.admin.checked(token, now);
    }
    Ok(Some(AdminUser {
        name: session.user,
        via: Via::Cookie { csrf: session.csrf },
    }))
}

/// The login form's fields.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /admin/login`: on success a session cookie and 303 to `/admin`;
/// otherwise the form again, with 401 (wrong login), 403 (no or a stale
/// form token) or 429 (too many failures from this address).
pub(crate) async fn login(
    State(state): State<HttpState>,
    ConnectInfo(ClientAddr { addr: peer, .. }): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let secure = state.secure_cookies();
    let login_cookie = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cross_site(&headers) || !state.admin.check_login_token(login_cookie, &form.csrf) {
        return super::admin::login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "The form expired; please try again.",
            &form.username,
        );
    }
    match verify_admin(&state, peer.ip(), &form.username, &form.password).await {
        Ok(Some(user)) => {
            incr(&state.counters.admin_logins);
            tracing::info!(ip = %peer.ip(), %user, "admin logged in");
            let token = state.admin.create(&user, Instant::now());
            let mut response = Redirect::to("/admin").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, Some(&token), "/", secure),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, None, "/admin", secure),
            );
            response
        }
        Ok(None) => super::admin::login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            "Wrong username or password.",
            &form.username,
        ),
        Err(HttpError::TooManyAttempts { .. }) => super::admin::login_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins; try again later.",
            &form.username,
        ),
        Err(error) => error.into_response(),
    }
}

/// The logout form's field.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /admin/logout` (form field `csrf` or header `X-CSRF-Token`):
/// ends the session, 303 to the login form. Without a session there is
/// nothing to end; with one, a wrong token is refused (403).
pub(crate) async fn logout(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let token = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    if let Some(session) = state.admin.touch(token, Instant::now()) {
        let header_token = headers
            .get("x-csrf-token")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !same(&form.csrf, &session.csrf) && !same(header_token, &session.csrf) {
            return HttpError::Csrf.into_response();
        }
        state.admin.remove(token);
        tracing::info!(user = %session.user, "admin logged out");
    }
    let mut response = Redirect::to("/admin/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, None, "/", state.secure_cookies()),
    );
    response
}

/// The pre-session cookie of a login form: the visitor's own if it has a
/// well-formed one, else a fresh one to set.
pub(crate) fn login_cookie(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, LOGIN_COOKIE).filter(|value| valid_cookie_value(value)) {
        Some(value) => (value.to_owned(), false),
        None => (random_token(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn sessions_expire_after_idle_time_and_can_end() {
        let sessions = AdminSessions::new(Duration::from_secs(60));
        let start = Instant::now();
        let token = sessions.create("admin", start);
        assert!(valid_cookie_value(&token));
        let info = sessions
            .touch(&token, start + Duration::from_secs(59))
            .unwrap();
        assert_eq!(info.user, "admin");
        assert!(valid_cookie_value(&info.csrf));
        assert_ne!(info.csrf, token, "the CSRF token is not the session id");
        assert!(
            sessions
                .touch(&token, start + Duration::from_secs(118))
                .is_some(),
            "use keeps a session alive"
        );
        assert!(
            sessions
                .touch(&token, start + Duration::from_secs(200))
                .is_none()
        );
        let token = sessions.create("admin", start);
        sessions.remove_user("admin");
        assert!(sessions.touch(&token, start).is_none());
        assert!(sessions.touch("not-a-session", start).is_none());
    }

    #[test]
    fn sessions_ask_for_a_recheck_after_a_while() {
        let sessions = AdminSessions::new(SESSION_IDLE);
        let start = Instant::now();
        let token = sessions.create("admin", start);
        assert!(!sessions.touch(&token, start).unwrap().recheck);
        let later = start + RECHECK_AFTER;
        assert!(sessions.touch(&token, later).unwrap().recheck);
        sessions.checked(&token, later);
        assert!(!sessions.touch(&token, later).unwrap().recheck);
    }

    #[test]
    fn the_login_token_is_bound_to_its_cookie_and_node() {
        let sessions = AdminSessions::new(SESSION_IDLE);
        let (cookie, fresh) = login_cookie(&HeaderMap::new());
        assert!(fresh);
        let token = sessions.login_token(&cookie);
        assert!(sessions.check_login_token(&cookie, &token));
        assert!(!sessions.check_login_token(&cookie, ""));
        let (other, _) = login_cookie(&HeaderMap::new());
        assert!(!sessions.check_login_token(&other, &token));
        assert!(!sessions.check_login_token("", &sessions.login_token("")));
        let elsewhere = AdminSessions::new(SESSION_IDLE);
        assert!(
            !elsewhere.check_login_token(&cookie, &token),
            "another node's key makes other tokens"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let map = headers(&[
            ("cookie", "theme=dark; starling_session=abc"),
            ("cookie", "starling_login=\"def\""),
        ]);
        assert_eq!(cookie(&map, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&map, LOGIN_COOKIE), Some("def"));
        assert_eq!(cookie(&map, "missing"), None);
        let (value, fresh) = login_cookie(&map);
        assert!(fresh, "a malformed login cookie is replaced");
        assert_ne!(value, "def");
    }

    #[test]
    fn set_cookie_has_the_flags() {
        let value = set_cookie(SESSION_COOKIE, Some("abc"), "/", true);
        assert_eq!(
            value,
            "starling_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        let value = set_cookie(SESSION_COOKIE, None, "/", false);
        assert!(value.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn basic_credentials_parse() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("admin:pa:ss");
        let map = headers(&[("authorization", &format!("Basic {encoded}"))]);
        assert_eq!(
            basic_credentials(&map),
            Some(Ok(("admin".into(), "pa:ss".into())))
        );
        let map = headers(&[("authorization", "Basic !!!")]);
        assert_eq!(basic_credentials(&map), Some(Err(())));
        let map = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(basic_credentials(&map), None);
    }

    #[test]
    fn usernames_are_prepared_like_the_store_keys_them() {
        assert_eq!(prepared_username("Admin"), Some("admin".into()));
        assert_eq!(prepared_username("admin@localhost"), None);
        assert_eq!(prepared_username(""), None);
    }

    #[test]
    fn browsers_say_where_a_request_comes_from() {
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!cross_site(&HeaderMap::new()), "scripts send nothing");
        assert!(from_page_script(&headers(&[("sec-fetch-mode", "cors")])));
        assert!(!from_page_script(&headers(&[(
            "sec-fetch-mode",
            "navigate"
        )])));
        assert!(!from_page_script(&HeaderMap::new()));
    }
}
