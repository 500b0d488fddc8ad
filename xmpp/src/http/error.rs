//! Every way an HTTP request fails, and the one place that turns a failure
//! into a response: JSON `{"error": "..."}` with the right status for the
//! APIs, a redirect to the login form for pages.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use crate::storage::StorageError;
use crate::users::AccountError;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No login, or a wrong one, on an API route. `challenge`: ask for
    /// HTTP Basic (not for the page's own scripts, where a browser would
    /// pop up its password dialog).
    #[error("login required: admin credentials (session cookie or HTTP Basic)")]
    Unauthorized { challenge: bool },
    /// No login on a page: the browser goes to the login form.
    #[error("login required")]
    LoginPage,
    /// A cookie-authenticated change without the session's CSRF token.
    #[error("missing or wrong CSRF token (send the X-CSRF-Token header)")]
    Csrf,
    /// A change requested by a page of another site.
    #[error("cross-site request refused")]
    CrossSite,
    #[error("too many failed logins from your address; try again later")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("too many requests from your address; try again later")]
    RateLimited,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Json(#[from] JsonRejection),
    #[error(transparent)]
    Query(#[from] QueryRejection),
    #[error(transparent)]
    Path(#[from] PathRejection),
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    #[error("account change failed: {0}")]
    Account(#[from] AccountError),
}

impl HttpError {
    fn status(&self) -> StatusCode {
        match self {
            HttpError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            HttpError::LoginPage => StatusCode::SEE_OTHER,
            HttpError::Csrf | HttpError::CrossSite => StatusCode::FORBIDDEN,
            HttpError::TooManyAttempts { .. } | HttpError::RateLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Json(rejection) => rejection.status(),
            HttpError::Query(rejection) => rejection.status(),
            HttpError::Path(rejection) => rejection.status(),
            HttpError::Storage(_) | HttpError::Account(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if let HttpError::LoginPage = self {
            return Redirect::to("/admin/login").into_response();
        }
        let status = self.status();
        let message = if status.is_server_error() {
            // The cause goes to the log; the client learns only that it failed.
            tracing::error!(error = %self, "HTTP request failed");
            "internal error; the node's log has the details".to_owned()
        } else {
            self.to_string()
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        match self {
            HttpError::Unauthorized { challenge: true } => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Starling admin\", charset=\"UTF-8\""),
                );
            }
            HttpError::TooManyAttempts { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn api_errors_are_json_with_their_status() {
        let response = HttpError::NotFound("no such cache".into()).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body(response).await, json!({"error": "no such cache"}));
    }

    #[tokio::test]
    async fn a_challenge_asks_for_basic_and_a_page_redirects() {
        let response = HttpError::Unauthorized { challenge: true }.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        let response = HttpError::Unauthorized { challenge: false }.into_response();
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        let response = HttpError::LoginPage.into_response();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/admin/login");
    }

    #[tokio::test]
    async fn internal_causes_stay_in_the_log() {
        let error = StorageError::UnsupportedUrl {
            url: "secret://inside".into(),
        };
        let response = HttpError::Storage(error).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body(response).await.to_string();
        assert!(!text.contains("secret"), "{text}");
    }
}
