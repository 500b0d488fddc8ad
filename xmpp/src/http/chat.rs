//! `/chat` (with `[http] chat_page = true`): a page running Converse.js
//! against this node, so a user can try the server in a browser at once.
//!
//! The page and its start script are built in; Converse.js itself is the
//! npm build (`xmpp/web`), served from `[http] chat_assets` under
//! `/chat/dist/`, never from a CDN. The page connects to this node's
//! `/xmpp-websocket`, or to `/http-bind` with `?transport=bosh`.

use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::HttpState;
use super::error::HttpError;

const CHAT_HTML: &str = include_str!("assets/chat.html");
const CHAT_JS: &str = include_str!("assets/chat.js");

/// Converse.js styles its elements inline and shows avatars and uploads
/// from `data:` and `blob:` URLs; scripts still come only from this origin.
/// Its OMEMO encryption compiles a WebAssembly module (libsignal), which
/// `'wasm-unsafe-eval'` allows without allowing JavaScript's `eval`.
const CHAT_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     img-src 'self' data: blob:; media-src 'self' data: blob:; \
     style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'";

/// The routes, when the page is on.
pub(super) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/chat", get(page))
        .route("/chat/start.js", get(start_script))
        .route("/chat/dist/{*file}", get(asset))
}

async fn page(State(state): State<HttpState>) -> Response {
    let domain = super::admin::escape(&state.server.domain);
    let mut response = Html(CHAT_HTML.replace("{{domain}}", &domain)).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CHAT_CSP),
    );
    response
}

async fn start_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CHAT_JS,
    )
        .into_response()
}

/// `GET /chat/dist/{file}`: a file of the Converse.js build.
async fn asset(State(state): State<HttpState>, UrlPath(file): UrlPath<String>) -> Response {
    let root = &state.server.config.http.chat_assets;
    let Some(path) = inside(root, &file) else {
        return HttpError::NotFound(format!("no chat asset {file:?}")).into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                // The build changes only with an upgrade of the node.
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
            .into_response(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            HttpError::NotFound(format!("no chat asset {file:?}")).into_response()
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read a chat asset");
            HttpError::NotFound(format!("chat asset {file:?} cannot be read")).into_response()
        }
    }
}

/// `file` under `root`, if it names a file there: plain path segments only
/// (no `..`, no absolute path, nothing hidden).
fn inside(root: &Path, file: &str) -> Option<PathBuf> {
    let relative = Path::new(file);
    let plain = relative.components().all(|component| match component {
        Component::Normal(name) => !name.to_string_lossy().starts_with('.'),
        _ => false,
    });
    (plain && !file.is_empty() && !file.contains('\\')).then(|| root.join(relative))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()).unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "eot" => "application/vnd.ms-fontobject",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "html" => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_inside_the_root() {
        let root = Path::new("/srv/converse");
        assert_eq!(
            inside(root, "converse.min.js"),
            Some(root.join("converse.min.js"))
        );
        assert_eq!(
            inside(root, "webfonts/icons.woff2"),
            Some(root.join("webfonts/icons.woff2"))
        );
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b",
            "/etc/passwd",
            ".git/config",
            "a\\..\\b",
        ] {
            assert_eq!(inside(root, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn types_of_the_build_files() {
        assert_eq!(
            content_type(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }
}
