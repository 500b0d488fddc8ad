//! XEP-0077 in-band registration: creating an account before login (only
//! when `c2s.registration` is on), and changing the password or removing
//! the account once logged in.

use std::sync::Arc;

use starling_core::config::Config;
use starling_core::jid::BareJid;
use starling_core::xml::{Element, ns};

use super::{
    Addressee, Disco, IqRequest, IqRoute, Module, ModuleConfigError, Options, Registration,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::bounce;
use crate::router::iq::reply;
use crate::server::Server;
use crate::session::{CloseReason, LocalSession};
use crate::stanza::{Condition, IqType, Stanza, StanzaError};
use crate::users::AccountError;

/// Password changes and account removal for logged-in users; creating
/// accounts before login as `[c2s] registration` says (the c2s negotiation
/// calls [`before_auth`]).
pub struct Register {
    open_registration: bool,
}

impl Register {
    pub fn new(config: &Config, options: Options) -> Result<Register, ModuleConfigError> {
        options.none()?;
        Ok(Register {
            open_registration: config.c2s.registration,
        })
    }
}

impl Module for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn registration(&self) -> Registration {
        let mut routes = Vec::new();
        for to in [Addressee::Server, Addressee::Account] {
            routes.push(IqRoute::get(ns::REGISTER, to));
            routes.push(IqRoute::set(ns::REGISTER, to));
        }
        Registration {
            iqs: routes,
            // Advertised only where anyone may register (XEP-0077 2).
            server_disco: if self.open_registration {
                vec![Disco::Feature(ns::REGISTER)]
            } else {
                Vec::new()
            },
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            match request.session {
                Some(session) if request.account.is_none() || request.is_own_account() => {
                    from_client(server, &session, request.stanza).await
                }
                _ => {
                    let error = StanzaError::new(Condition::Forbidden)
                        .with_text("Only the account's owner can change it");
                    bounce(server, &request.stanza, error).await
                }
            }
        })
    }
}

/// Longest password accepted, in bytes.
const MAX_PASSWORD: usize = 1024;

fn form(username: Option<&str>) -> Element {
    let mut query = Element::new("query", ns::REGISTER);
    match username {
        Some(username) => {
            query.push_child(Element::new("registered", ns::REGISTER));
            query.push_child(Element::new("username", ns::REGISTER).with_text(username));
        }
        None => {
            query.push_child(
                Element::new("instructions", ns::REGISTER)
                    .with_text("Choose a username and password to register with this server."),
            );
            query.push_child(Element::new("username", ns::REGISTER));
        }
    }
    query.push_child(Element::new("password", ns::REGISTER));
    query
}

/// The prepared node part of a requested username, or the error to send.
fn prepare_username(server: &Server, requested: &str) -> Result<String, StanzaError> {
    let invalid = || {
        StanzaError::new(Condition::NotAcceptable)
            .with_text("The username is not a valid JID localpart")
    };
    if requested.is_empty() || requested.contains(['@', '/']) {
        return Err(invalid());
    }
    let jid = BareJid::new(&format!("{requested}@{}", server.domain)).map_err(|_| invalid())?;
    jid.node().map(|node| node.to_string()).ok_or_else(invalid)
}

fn field(query: &Element, name: &str) -> Option<String> {
    query.child(name, ns::REGISTER).map(Element::text)
}

fn check_password(password: &str) -> Result<(), StanzaError> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(StanzaError::new(Condition::NotAcceptable)
            .with_text(format!("The password must have 1 to {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

fn storage_failure(error: AccountError) -> StanzaError {
    tracing::error!(%error, "account change failed");
    StanzaError::new(Condition::InternalServerError)
        .with_text("The account store failed; try again")
}

/// A registration request on a stream that is not authenticated yet; returns
/// the reply to write (result or error).
pub async fn before_auth(server: &Server, stanza: &Stanza) -> Element {
    match register_new(server, stanza).await {
        Ok(payload) => {
            let mut result = stanza.iq_result();
            if let Some(payload) = payload {
                result.push_child(payload);
            }
            result
        }
        Err(error) => crate::stanza::error_reply(&stanza.element, &error),
    }
}

async fn register_new(server: &Server, stanza: &Stanza) -> Result<Option<Element>, StanzaError> {
    if !server.config.c2s.registration {
        return Err(StanzaError::new(Condition::ServiceUnavailable)
            .with_text("In-band registration is disabled on this server"));
    }
    let query = stanza
        .payload()
        .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
    match stanza.iq_type() {
        Some(IqType::Get) => Ok(Some(form(None))),
        Some(IqType::Set) if query.has_child("remove", ns::REGISTER) => {
            Err(StanzaError::new(Condition::NotAuthorized)
                .with_text("Log in before removing an account"))
        }
        Some(IqType::Set) => {
            let (Some(username), Some(password)) =
                (field(query, "username"), field(query, "password"))
            else {
                return Err(StanzaError::new(Condition::NotAcceptable)
                    .with_text("Both username and password are required"));
            };
            let username = prepare_username(server, &username)?;
            check_password(&password)?;
            match server.users.create(&username, &password, false).await {
                Ok(()) => {
                    tracing::info!(user = %username, "account registered in-band");
                    Ok(None)
                }
                Err(AccountError::Storage(crate::storage::StorageError::UserExists(_))) => {
                    Err(StanzaError::new(Condition::Conflict).with_text("That username is taken"))
                }
                Err(error) => Err(storage_failure(error)),
            }
        }
        _ => Err(StanzaError::new(Condition::BadRequest)),
    }
}

/// Registration requests from a logged-in user: the form, a password
/// change, or removal of the account.
async fn from_client(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) -> Routed {
    let Some(username) = session.jid.node().map(|node| node.to_string()) else {
        return bounce(server, &stanza, StanzaError::new(Condition::BadRequest)).await;
    };
    let Some(query) = stanza.payload().cloned() else {
        return bounce(server, &stanza, StanzaError::new(Condition::BadRequest)).await;
    };
    if stanza.iq_type() == Some(IqType::Get) {
        return reply(server, &stanza, Some(form(Some(&username)))).await;
    }
    if query.has_child("remove", ns::REGISTER) {
        return match server.users.delete(&username).await {
            Ok(_) => {
                tracing::info!(user = %username, "account removed in-band");
                let handled = reply(server, &stanza, None).await;
                for session in server.sessions.resources(&session.jid.to_bare()) {
                    session.close(CloseReason::AccountRemoved);
                }
                handled
            }
            Err(error) => bounce(server, &stanza, storage_failure(error.into())).await,
        };
    }
    let named = field(&query, "username").map(|name| prepare_username(server, &name));
    if !matches!(named, Some(Ok(ref name)) if *name == username) {
        let error =
            StanzaError::new(Condition::BadRequest).with_text("The username must be your own");
        return bounce(server, &stanza, error).await;
    }
    let Some(password) = field(&query, "password") else {
        let error = StanzaError::new(Condition::BadRequest).with_text("A new password is required");
        return bounce(server, &stanza, error).await;
    };
    if let Err(error) = check_password(&password) {
        return bounce(server, &stanza, error).await;
    }
    match server.users.set_password(&username, &password).await {
        Ok(_) => reply(server, &stanza, None).await,
        Err(error) => bounce(server, &stanza, storage_failure(error)).await,
    }
}
