//! XEP-0049 private XML storage: an account keeps one element per
//! namespace, readable and writable by the account only, in the store (so
//! every node answers the same).
//!
//! A set may carry several elements (each replaces its namespace's, all or
//! nothing); a get names exactly one. Namespaces of the protocol itself
//! (`jabber:client`, `jabber:server`, `jabber:iq:private`, and none, which
//! is what a child without `xmlns` inherits) are refused with
//! `<not-acceptable/>`, as XEP-0049 requires. `[modules.private] max_bytes`
//! bounds what one account keeps in all namespaces together.

use starling_core::jid::BareJid;
use starling_core::xml::{Element, ns};

use super::{
    Addressee, Disco, Hook, IqRequest, IqRoute, Module, ModuleConfigError, Options, Registration,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::iq::answer;
use crate::server::Server;
use crate::stanza::{Condition, IqType, StanzaError};
use crate::storage::{PrivateWrite, StorageError, Store};

pub const NS_PRIVATE: &str = "jabber:iq:private";

/// Namespaces no private element may be stored under.
const RESERVED: &[&str] = &["", ns::CLIENT, ns::SERVER, NS_PRIVATE];

/// What one account keeps, all namespaces together, serialised, in bytes
/// (`max_bytes`). Bookmarks of a few thousand rooms and the preferences
/// clients keep here fit many times over; one account cannot fill the
/// store.
const DEFAULT_MAX_BYTES: u64 = 512 * 1024;

pub struct PrivateModule {
    max_bytes: u64,
}

impl PrivateModule {
    pub fn new(options: Options) -> Result<PrivateModule, ModuleConfigError> {
        Ok(PrivateModule {
            max_bytes: options.max_bytes(DEFAULT_MAX_BYTES)?,
        })
    }
}

impl Module for PrivateModule {
    fn name(&self) -> &'static str {
        "private"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::get_and_set(NS_PRIVATE, Addressee::Account),
            hooks: vec![Hook::UserDeleted],
            // Prosody and ejabberd list it on the account, where it is used.
            account_disco: vec![Disco::Feature(NS_PRIVATE)],
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let result = self.handle(server, &request).await;
            answer(server, &request.stanza, result).await
        })
    }

    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        super::delete_for_account(user, |owner| store.delete_private(owner))
    }
}

impl PrivateModule {
    async fn handle(
        &self,
        server: &Server,
        request: &IqRequest,
    ) -> Result<Option<Element>, StanzaError> {
        let to_domain = request
            .stanza
            .to
            .as_ref()
            .is_some_and(|to| to.node().is_none());
        let username = match (&request.account, to_domain) {
            (Some(account), false) if request.is_own_account() => account.node(),
            _ => None,
        };
        let Some(username) = username else {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("Private storage is only for the account's owner"));
        };
        let query = request
            .stanza
            .payload()
            .filter(|payload| payload.is("query", NS_PRIVATE))
            .ok_or_else(|| {
                StanzaError::new(Condition::BadRequest)
                    .with_text("Expected <query xmlns='jabber:iq:private'/>")
            })?;
        let elements = requested_elements(query)
            .map_err(|why| StanzaError::new(Condition::NotAcceptable).with_text(why))?;
        let failed = |error: StorageError| {
            tracing::error!(user = %username, %error, "private storage failed");
            StanzaError::new(Condition::InternalServerError).with_text("Private storage failed")
        };
        match request.stanza.iq_type() {
            Some(IqType::Set) => {
                let serialised: Vec<(&str, String)> = elements
                    .iter()
                    .map(|element| (element.ns(), element.to_standalone_string()))
                    .collect();
                let pairs: Vec<(&str, &str)> = serialised
                    .iter()
                    .map(|(namespace, xml)| (*namespace, xml.as_str()))
                    .collect();
                match server
                    .store
                    .set_private(username.as_str(), &pairs, self.max_bytes)
                    .await
                    .map_err(failed)?
                {
                    PrivateWrite::Stored => Ok(None),
                    PrivateWrite::OverLimit { total_bytes } => {
                        Err(StanzaError::new(Condition::NotAcceptable).with_text(format!(
                            "Private storage would hold {total_bytes} bytes; this server keeps at most {} bytes per account",
                            self.max_bytes
                        )))
                    }
                }
            }
            _ => {
                let [wanted] = elements.as_slice() else {
                    return Err(StanzaError::new(Condition::NotAcceptable)
                        .with_text("A private storage get names exactly one element"));
                };
                let stored = server
                    .store
                    .get_private(username.as_str(), wanted.ns())
                    .await
                    .map_err(failed)?;
                let element = match stored {
                    Some(xml) => crate::stream::parse_element(xml.as_bytes()).map_err(
                        super::internal_error(&username, "stored private XML is unreadable"),
                    )?,
                    // Nothing stored: the element as asked for, empty.
                    None => Element::new(wanted.name().to_owned(), wanted.ns().to_owned()),
                };
                Ok(Some(Element::new("query", NS_PRIVATE).with_child(element)))
            }
        }
    }
}

/// The query's child elements, at least one, none in a reserved
/// namespace; else why not, for a `<not-acceptable/>`.
fn requested_elements(query: &Element) -> Result<Vec<&Element>, String> {
    let elements: Vec<&Element> = query.children().collect();
    if elements.is_empty() {
        return Err("Private storage needs an element in a namespace of its own".to_owned());
    }
    if let Some(reserved) = elements
        .iter()
        .find(|element| RESERVED.contains(&element.ns()))
    {
        return Err(format!(
            "The namespace {:?} is reserved; private XML needs a namespace of its own",
            reserved.ns()
        ));
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(toml: &str) -> Result<PrivateModule, ModuleConfigError> {
        PrivateModule::new(Options::from_config_for_test("private", toml))
    }

    fn query(xml: &str) -> Element {
        crate::stream::parse_element(xml.as_bytes()).unwrap()
    }

    #[test]
    fn the_default_config_file_states_the_defaults() {
        let module = module(starling_core::config::DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(module.max_bytes, DEFAULT_MAX_BYTES);
    }

    #[test]
    fn the_limit_defaults_and_unknown_keys_are_refused() {
        assert_eq!(module("").unwrap().max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(
            module("[modules.private]\nmax_bytes = 10\n")
                .unwrap()
                .max_bytes,
            10
        );
        let error = module("[modules.private]\nlimit = 10\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("modules.private") && error.contains("limit"),
            "{error}"
        );
        assert!(module("[modules.private]\nmax_bytes = 0\n").is_err());
    }

    #[test]
    fn reserved_and_missing_namespaces_are_not_acceptable() {
        for xml in [
            "<query xmlns='jabber:iq:private'/>",
            "<query xmlns='jabber:iq:private'><inherits/></query>",
            "<query xmlns='jabber:iq:private'><x xmlns=''/></query>",
            "<query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query>",
            "<query xmlns='jabber:iq:private'><x xmlns='jabber:server'/></query>",
            "<query xmlns='jabber:iq:private'><ok xmlns='urn:ok'/><x xmlns='jabber:client'/></query>",
        ] {
            assert!(requested_elements(&query(xml)).is_err(), "{xml}");
        }
        let query =
            query("<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>");
        assert_eq!(
            requested_elements(&query).unwrap()[0].ns(),
            "storage:bookmarks"
        );
    }
}
