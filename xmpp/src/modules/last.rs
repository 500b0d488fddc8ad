//! XEP-0012 last activity: the server's uptime, and for an account the
//! time since its last logout with the status text it left with (0 while
//! it has an available session anywhere in the cluster).
//!
//! Who may ask about an account: the account itself and users subscribed
//! to its presence (it could see them go offline anyway); others get
//! `<forbidden/>`. An account never seen to log out is `<item-not-found/>`.
//!
//! The logout is written to the store, so any node answers:
//! - when a session ends here and the user has no other session in the
//!   cluster (sessions of one user ending on two nodes at the same instant
//!   may each still see the other and both skip the write; the answer is
//!   then the logout before);
//! - when a member dies, by every surviving member, for each of its users
//!   left with no session (the same time, written more than once).
//!
//! The status text is that of the session's last unavailable presence
//! without `to`, kept here in memory until the session ends.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use starling_core::cluster::{NodeId, StanzaKind};
use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};

use super::{
    Addressee, Disco, Flow, Hook, IqRequest, IqRoute, Module, ModuleConfigError, Options,
    Registration, StanzaKinds,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::iq::answer;
use crate::router::resources;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, PresenceType, Stanza, StanzaError};
use crate::storage::{StorageError, Store};
use crate::util::time::now_ms;

pub const NS_LAST: &str = "jabber:iq:last";

pub struct LastModule {
    /// Status text of the last unavailable presence of sessions on this
    /// node, by session id, until they end or become available again.
    leaving_status: Mutex<HashMap<u64, String>>,
}

impl LastModule {
    pub fn new(options: Options) -> Result<LastModule, ModuleConfigError> {
        options.none()?;
        Ok(LastModule {
            leaving_status: Mutex::new(HashMap::new()),
        })
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
        self.leaving_status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Module for LastModule {
    fn name(&self) -> &'static str {
        "last"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::gets(NS_LAST, &[Addressee::Server, Addressee::Account]),
            hooks: vec![
                Hook::ClientStanza,
                Hook::SessionClosed,
                Hook::SessionMoved,
                Hook::PeerSessions,
                Hook::UserDeleted,
            ],
            server_disco: vec![Disco::Feature(NS_LAST)],
            account_disco: vec![Disco::Feature(NS_LAST)],
            stanza_kinds: StanzaKinds::only(&[StanzaKind::Presence]),
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let result = respond(server, &request).await.map(Some);
            answer(server, &request.stanza, result).await
        })
    }

    fn client_stanza<'a>(
        &'a self,
        _server: &'a Server,
        session: &'a Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if stanza.kind == StanzaKind::Presence && stanza.to.is_none() {
                match stanza.presence_type() {
                    Some(PresenceType::Unavailable) => {
                        let status = stanza
                            .element
                            .child("status", ns::CLIENT)
                            .map(Element::text)
                            .unwrap_or_default();
                        self.statuses().insert(session.id, status);
                    }
                    Some(PresenceType::Available) => {
                        self.statuses().remove(&session.id);
                    }
                    _ => {}
                }
            }
            Flow::Continue(stanza)
        })
    }

    fn session_closed<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let status = self.statuses().remove(&session.id).unwrap_or_default();
            let user = session.jid.to_bare();
            // This session is unbound already: anything left is another one.
            if resources::resources(server, &user).is_empty() {
                record_logout(&server.store, &user, now_ms(), &status).await;
            }
        })
    }

    fn export_session(&self, _server: &Server, session: &LocalSession) -> Option<String> {
        self.statuses().remove(&session.id)
    }

    fn restore_session(&self, _server: &Server, session: &Arc<LocalSession>, status: &str) {
        self.statuses().insert(session.id, status.to_owned());
    }

    fn peer_sessions<'a>(
        &'a self,
        server: &'a Server,
        sessions: &'a [FullJid],
        regained_from: Option<NodeId>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if regained_from.is_some() {
                return;
            }
            let users: HashSet<BareJid> = sessions.iter().map(|jid| jid.to_bare()).collect();
            let gone: Vec<BareJid> = users
                .into_iter()
                .filter(|user| resources::resources(server, user).is_empty())
                .collect();
            let Some(this) = server.this() else { return };
            // Not on the cluster's event path: a member may take thousands
            // of sessions with it.
            tokio::spawn(async move {
                let at_ms = now_ms();
                for user in gone {
                    record_logout(&this.store, &user, at_ms, "").await;
                }
            });
        })
    }

    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        super::delete_for_account(user, |owner| store.delete_last_logout(owner))
    }
}

/// Nobody waits for this write; a failure is logged.
async fn record_logout(store: &Store, user: &BareJid, at_ms: i64, status: &str) {
    let Some(username) = user.node() else { return };
    match store
        .set_last_logout(username.as_str(), at_ms, status)
        .await
    {
        Ok(()) => {}
        // Deleted while logged in: nothing to remember.
        Err(StorageError::UnknownUser(_)) => {}
        Err(error) => tracing::error!(%user, %error, "recording the last logout failed"),
    }
}

async fn respond(server: &Server, request: &IqRequest) -> Result<Element, StanzaError> {
    let account = match (&request.account, &request.session) {
        (Some(account), _) => account.clone(),
        // No `to` from a client: its own account (RFC 6120 10.3.3).
        (None, Some(session)) if request.stanza.to.is_none() => session.jid.to_bare(),
        (None, _) => return Ok(seconds(server.started.elapsed().as_secs(), "")),
    };
    let requester = request.from().map(|from| from.to_bare());
    if requester.as_ref() != Some(&account) {
        let roster = server
            .rosters
            .get(&account)
            .await
            .map_err(super::internal_error(
                &account,
                "roster unavailable for a last activity query",
            ))?;
        if !requester.is_some_and(|requester| roster.is_subscriber(&requester)) {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("Only contacts subscribed to the user's presence may ask"));
        }
    }
    if resources::resources(server, &account)
        .iter()
        .any(|candidate| candidate.available)
    {
        return Ok(seconds(0, ""));
    }
    let Some(username) = account.node() else {
        return Err(StanzaError::new(Condition::ItemNotFound));
    };
    let last = server
        .store
        .get_last_logout(username.as_str())
        .await
        .map_err(super::internal_error(
            &account,
            "reading the last logout failed",
        ))?;
    match last {
        Some(last) => {
            let elapsed_ms = now_ms().saturating_sub(last.at_ms).max(0);
            Ok(seconds(elapsed_ms.unsigned_abs() / 1000, &last.status))
        }
        None => Err(StanzaError::new(Condition::ItemNotFound)
            .with_text("The user has not been seen since the server kept track")),
    }
}

fn seconds(seconds: u64, status: &str) -> Element {
    Element::new("query", NS_LAST)
        .with_attr("seconds", seconds.to_string())
        .with_text(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::config::DEFAULT_CONFIG_TOML;

    fn module(toml: &str) -> Result<LastModule, ModuleConfigError> {
        LastModule::new(Options::from_config_for_test("last", toml))
    }

    #[test]
    fn the_default_config_file_is_accepted_and_unknown_keys_are_not() {
        assert!(module(DEFAULT_CONFIG_TOML).is_ok());
        let error = module("[modules.last]\nmax_seconds = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("modules.last") && error.contains("max_seconds"),
            "{error}"
        );
    }

    #[test]
    fn the_answer_carries_seconds_and_status() {
        let answer = seconds(42, "Gone fishing");
        assert!(answer.is("query", NS_LAST));
        assert_eq!(answer.attr("seconds"), Some("42"));
        assert_eq!(answer.text(), "Gone fishing");
    }
}
