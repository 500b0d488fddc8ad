//! `/api/users`: list and search accounts, add one, delete one, set a new
//! password. Changes reach the other members as `starling user` changes
//! do: through the shared store and the account cache's invalidation.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use starling_core::jid::BareJid;

use super::limit;
use crate::http::auth::{AdminUser, prepared_username};
use crate::http::{HttpError, HttpState};
use crate::session::CloseReason;
use crate::storage::StorageError;
use crate::users::AccountError;

#[derive(Debug, Deserialize)]
pub(crate) struct UserQuery {
    search: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct UserRow {
    username: String,
    admin: bool,
    created_at_ms: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct UserList {
    users: Vec<UserRow>,
    /// Accounts matching the search, over all pages.
    total: i64,
}

pub(crate) async fn list(
    State(state): State<HttpState>,
    _admin: AdminUser,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<UserList>, HttpError> {
    let Query(query) = query?;
    let search = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|search| !search.is_empty());
    let store = &state.server.store;
    let users = store
        .list_users(
            search,
            limit(query.limit, 50, 1000),
            query.offset.unwrap_or(0),
        )
        .await?
        .into_iter()
        .map(|user| UserRow {
            username: user.username,
            admin: user.admin,
            created_at_ms: user.created_at_ms,
        })
        .collect();
    let total = store.count_users(search).await?;
    Ok(Json(UserList { users, total }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewAccount {
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

fn username(name: &str) -> Result<String, HttpError> {
    prepared_username(name).ok_or_else(|| {
        HttpError::BadRequest(format!(
            "{name:?} is not a valid username (the part before @, without the domain)"
        ))
    })
}

fn password(password: &str) -> Result<&str, HttpError> {
    if password.is_empty() {
        return Err(HttpError::BadRequest(
            "the password must not be empty".into(),
        ));
    }
    Ok(password)
}

pub(crate) async fn create(
    State(state): State<HttpState>,
    admin: AdminUser,
    body: Result<Json<NewAccount>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(account) = body?;
    let name = username(&account.username)?;
    let secret = password(&account.password)?;
    match state
        .server
        .users
        .create(&name, secret, account.admin)
        .await
    {
        Ok(()) => {
            tracing::info!(user = %name, is_admin = account.admin, admin = %admin.name, "account created");
            Ok(StatusCode::CREATED)
        }
        Err(AccountError::Storage(StorageError::UserExists(_))) => Err(HttpError::Conflict(
            format!("the user {name:?} exists already"),
        )),
        Err(error) => Err(error.into()),
    }
}

pub(crate) async fn remove(
    State(state): State<HttpState>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> Result<StatusCode, HttpError> {
    let name = username(&name)?;
    let server = &state.server;
    if !server.users.delete(&name).await? {
        return Err(HttpError::NotFound(format!("no user {name:?}")));
    }
    // Other members close theirs when the account cache invalidation arrives.
    if let Ok(bare) = BareJid::new(&format!("{name}@{}", server.domain)) {
        for session in server.sessions.resources(&bare) {
            session.close(CloseReason::AccountRemoved);
        }
    }
    state.admin.remove_user(&name);
    tracing::info!(user = %name, admin = %admin.name, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewPassword {
    password: String,
}

pub(crate) async fn set_password(
    State(state): State<HttpState>,
    admin: AdminUser,
    Path(name): Path<String>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(request) = body?;
    let name = username(&name)?;
    let secret = password(&request.password)?;
    if !state.server.users.set_password(&name, secret).await? {
        return Err(HttpError::NotFound(format!("no user {name:?}")));
    }
    if name != admin.name {
        state.admin.remove_user(&name);
    }
    tracing::info!(user = %name, admin = %admin.name, "password changed");
    Ok(StatusCode::NO_CONTENT)
}
