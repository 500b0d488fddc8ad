//! The admin pages: the single-page console at `/admin`, the login form,
//! and the static files they use, all embedded in the binary (no external
//! assets, nothing fetched at run time).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

use super::auth::{self, AdminPage, AdminUser, LOGIN_COOKIE};
use super::{HttpError, HttpState};

const ADMIN_HTML: &str = include_str!("assets/admin.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const ADMIN_CSS: &str = include_str!("assets/admin.css");
const ADMIN_JS: &str = include_str!("assets/admin.js");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// `GET /admin`: the console (its data comes from the JSON APIs).
pub(crate) async fn page(AdminPage(_admin): AdminPage) -> Html<&'static str> {
    Html(ADMIN_HTML)
}

/// `GET /admin/login`.
pub(crate) async fn login_form(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    login_page(&state, &headers, StatusCode::OK, "", "")
}

/// The login form with a fresh or kept pre-session cookie and its token.
pub(crate) fn login_page(
    state: &HttpState,
    headers: &HeaderMap,
    status: StatusCode,
    error: &str,
    username: &str,
) -> Response {
    let (cookie, fresh) = auth::login_cookie(headers);
    let html = LOGIN_HTML
        .replace("{{csrf}}", &state.admin.login_token(&cookie))
        .replace("{{node}}", &escape(&state.server.config.cluster.node_name))
        .replace("{{username}}", &escape(username))
        .replace("{{error}}", &escape(error));
    let mut response = (status, Html(html)).into_response();
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            auth::set_cookie(
                LOGIN_COOKIE,
                Some(&cookie),
                "/admin",
                state.secure_cookies(),
            ),
        );
    }
    response
}

/// `GET /admin/assets/{file}`: public, they hold no data.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "admin.css" => (ADMIN_CSS, "text/css; charset=utf-8"),
        "admin.js" => (ADMIN_JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (FAVICON_SVG, "image/svg+xml"),
        _ => return HttpError::NotFound(format!("no asset {file:?}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Anything no route matched: under `/api` and `/admin` a visitor without
/// a login learns nothing, not even whether the path exists.
pub(crate) async fn not_found(uri: Uri, admin: Result<AdminUser, HttpError>) -> Response {
    let path = uri.path();
    let missing = HttpError::NotFound(format!("no such resource: {path}"));
    let protected = path == "/api" || path.starts_with("/api/") || path.starts_with("/admin");
    if !protected {
        return missing.into_response();
    }
    match admin {
        // These refusals come after a successful login.
        Ok(_) | Err(HttpError::Csrf) | Err(HttpError::CrossSite) => missing.into_response(),
        Err(HttpError::Unauthorized { .. }) if path.starts_with("/admin") => {
            HttpError::LoginPage.into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// HTML-escapes text for an element or a quoted attribute.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_login_page_has_every_placeholder() {
        for placeholder in ["{{csrf}}", "{{node}}", "{{username}}", "{{error}}"] {
            assert!(LOGIN_HTML.contains(placeholder), "{placeholder}");
        }
    }
}
