//! XEP-0054 vcard-temp and XEP-0153 vCard-based avatar hashes.
//!
//! Any local user may read an account's vCard (as Prosody allows); only the
//! owner sets it, up to `[modules.vcard] max_bytes`. The vCard lives in the
//! store, so every node answers the same.
//!
//! XEP-0153: the SHA-1 of the photo is computed when the vCard is set and
//! stored beside it. An available presence a client broadcasts without its
//! own `<x xmlns='vcard-temp:x:update'/>` gets one with that hash, when the
//! account has a vCard (the module runs before the presence module, which
//! then broadcasts the modified stanza). That is one primary-key read per
//! such presence, with no cache on the node, so nothing to invalidate
//! across the cluster when the vCard changes. A vCard set does not make the
//! server send presence: the hash goes out with the client's next available
//! presence, which XEP-0153 clients send after changing their avatar.

use sha1::{Digest, Sha1};
use starling_core::cluster::StanzaKind;
use starling_core::jid::BareJid;
use starling_core::xml::Element;

use super::{
    Addressee, Disco, Flow, Hook, IqRequest, IqRoute, Module, ModuleConfigError, Options,
    Registration, StanzaKinds,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::iq::answer;
use crate::router::message;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, PresenceType, Stanza, StanzaError};
use crate::storage::{StorageError, Store};

pub const NS_VCARD: &str = "vcard-temp";
pub const NS_VCARD_UPDATE: &str = "vcard-temp:x:update";

/// The largest vCard kept, serialised, in bytes (`max_bytes`): room for a
/// photo of about 90 KiB (base64 adds a third) and the rest of a vCard, at
/// half the default stanza size limit.
const DEFAULT_MAX_BYTES: u64 = 128 * 1024;

pub struct VcardModule {
    max_bytes: usize,
}

impl VcardModule {
    pub fn new(options: Options) -> Result<VcardModule, ModuleConfigError> {
        let max_bytes = options.max_bytes(DEFAULT_MAX_BYTES)?;
        Ok(VcardModule {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        })
    }
}

impl Module for VcardModule {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::get_and_set(NS_VCARD, Addressee::Account),
            hooks: vec![Hook::ClientStanza, Hook::UserDeleted],
            server_disco: vec![Disco::Feature(NS_VCARD)],
            account_disco: vec![Disco::Feature(NS_VCARD)],
            stanza_kinds: StanzaKinds::only(&[StanzaKind::Presence]),
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let result = match request.stanza.iq_type() {
                Some(IqType::Set) => self.set(server, &request).await.map(|()| None),
                _ => get(server, &request).await.map(Some),
            };
            answer(server, &request.stanza, result).await
        })
    }

    fn client_stanza<'a>(
        &'a self,
        server: &'a Server,
        session: &'a std::sync::Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move { Flow::Continue(add_photo_hash(server, session, stanza).await) })
    }

    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        super::delete_for_account(user, |owner| store.delete_vcard(owner))
    }
}

impl VcardModule {
    async fn set(&self, server: &Server, request: &IqRequest) -> Result<(), StanzaError> {
        let username = match &request.account {
            Some(account) if request.is_own_account() && !addressed_to_domain(&request.stanza) => {
                account.node()
            }
            _ => None,
        };
        let Some(username) = username else {
            return Err(StanzaError::new(Condition::Forbidden)
                .with_text("Only the account's owner sets its vCard"));
        };
        let vcard = vcard_payload(&request.stanza).ok_or_else(not_a_vcard)?;
        let xml = vcard.to_standalone_string();
        if xml.len() > self.max_bytes {
            return Err(
                StanzaError::new(Condition::NotAcceptable).with_text(format!(
                    "The vCard is {} bytes; this server keeps vCards of at most {} bytes",
                    xml.len(),
                    self.max_bytes
                )),
            );
        }
        let photo_hash = photo_hash(vcard).map_err(|_| {
            StanzaError::new(Condition::BadRequest).with_text("PHOTO/BINVAL is not base64")
        })?;
        server
            .store
            .set_vcard(username.as_str(), &xml, &photo_hash)
            .await
            .map_err(|error| {
                tracing::error!(user = %username, %error, "storing a vCard failed");
                StanzaError::new(Condition::InternalServerError)
                    .with_text("The vCard could not be stored")
            })
    }
}

/// The account's vCard, an empty one when none was set; the server's own
/// (to the domain) is always empty.
async fn get(server: &Server, request: &IqRequest) -> Result<Element, StanzaError> {
    vcard_payload(&request.stanza).ok_or_else(not_a_vcard)?;
    let empty = Element::new("vCard", NS_VCARD);
    if addressed_to_domain(&request.stanza) {
        return Ok(empty);
    }
    let Some((account, username)) = request
        .account
        .as_ref()
        .and_then(|account| Some((account, account.node()?)))
    else {
        return Ok(empty);
    };
    let stored = server
        .store
        .get_vcard(username.as_str())
        .await
        .map_err(super::internal_error(&account, "reading a vCard failed"))?;
    match stored {
        Some(stored) => crate::stream::parse_element(stored.xml.as_bytes()).map_err(|error| {
            tracing::error!(user = %account, %error, "a stored vCard is unreadable");
            StanzaError::new(Condition::InternalServerError)
                .with_text("The stored vCard is unreadable")
        }),
        // RFC 6121 8.5.1: an iq to an account that does not exist.
        None => match message::account_exists(server, account).await {
            Ok(true) => Ok(empty),
            Ok(false) => {
                Err(StanzaError::new(Condition::ServiceUnavailable).with_text("No such user"))
            }
            Err(()) => Err(StanzaError::new(Condition::InternalServerError)),
        },
    }
}

/// A request to the domain itself (the core hands it over as the sender's
/// account, since no server route is registered).
fn addressed_to_domain(stanza: &Stanza) -> bool {
    stanza.to.as_ref().is_some_and(|to| to.node().is_none())
}

fn vcard_payload(stanza: &Stanza) -> Option<&Element> {
    stanza
        .payload()
        .filter(|payload| payload.is("vCard", NS_VCARD))
}

fn not_a_vcard() -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text("Expected <vCard xmlns='vcard-temp'/>")
}

/// XEP-0153: the lower-case hex SHA-1 of the decoded `PHOTO/BINVAL`; empty
/// when the vCard has no embedded photo (none, or only an `EXTVAL` link).
fn photo_hash(vcard: &Element) -> Result<String, base64::DecodeError> {
    let Some(binval) = vcard
        .child("PHOTO", NS_VCARD)
        .and_then(|photo| photo.child("BINVAL", NS_VCARD))
    else {
        return Ok(String::new());
    };
    // Clients wrap the base64 in lines.
    let encoded: String = binval.text().split_ascii_whitespace().collect();
    if encoded.is_empty() {
        return Ok(String::new());
    }
    use base64::Engine;
    let photo = base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes())?;
    Ok(Sha1::digest(&photo)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// An available presence broadcast without `<x xmlns='vcard-temp:x:update'/>`
/// gets one naming the account's photo (`<photo/>` empty: no photo) when the
/// account has a vCard; the client's own element is never touched.
async fn add_photo_hash(server: &Server, session: &LocalSession, mut stanza: Stanza) -> Stanza {
    let broadcast = stanza.kind == StanzaKind::Presence
        && stanza.to.is_none()
        && stanza.presence_type() == Some(PresenceType::Available);
    if !broadcast || stanza.element.has_child("x", NS_VCARD_UPDATE) {
        return stanza;
    }
    let Some(username) = session.jid.node() else {
        return stanza;
    };
    match server.store.get_vcard_photo_hash(username.as_str()).await {
        Ok(Some(hash)) => {
            let mut photo = Element::new("photo", NS_VCARD_UPDATE);
            photo.push_text(hash);
            stanza
                .element
                .push_child(Element::new("x", NS_VCARD_UPDATE).with_child(photo));
        }
        Ok(None) => {}
        // The presence still goes out, only without the hint.
        Err(error) => tracing::warn!(jid = %session.jid, %error, "reading the photo hash failed"),
    }
    stanza
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(toml: &str) -> Result<VcardModule, ModuleConfigError> {
        VcardModule::new(Options::from_config_for_test("vcard", toml))
    }

    fn parse(xml: &str) -> Element {
        crate::stream::parse_element(xml.as_bytes()).unwrap()
    }

    #[test]
    fn the_default_config_file_states_the_defaults() {
        let module = module(starling_core::config::DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(module.max_bytes as u64, DEFAULT_MAX_BYTES);
    }

    #[test]
    fn the_limit_defaults_and_is_configurable() {
        assert_eq!(module("").unwrap().max_bytes as u64, DEFAULT_MAX_BYTES);
        assert_eq!(
            module("[modules.vcard]\nmax_bytes = 1000\n")
                .unwrap()
                .max_bytes,
            1000
        );
    }

    #[test]
    fn unknown_keys_and_a_zero_limit_are_refused() {
        let error = module("[modules.vcard]\nmax_byte = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("modules.vcard") && error.contains("max_byte"),
            "{error}"
        );
        let error = module("[modules.vcard]\nmax_bytes = 0\n")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("max_bytes"), "{error}");
    }

    #[test]
    fn the_photo_hash_is_the_sha1_of_the_decoded_binval() {
        // "hello" in base64, wrapped as clients wrap it.
        let vcard = parse(
            "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>\
             <BINVAL>aGVs\n bG8=</BINVAL></PHOTO></vCard>",
        );
        assert_eq!(
            photo_hash(&vcard).unwrap(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
    }

    #[test]
    fn no_photo_or_a_link_has_no_hash_and_bad_base64_is_refused() {
        assert_eq!(
            photo_hash(&parse("<vCard xmlns='vcard-temp'/>")).unwrap(),
            ""
        );
        let linked = parse(
            "<vCard xmlns='vcard-temp'><PHOTO><EXTVAL>https://x/a.png</EXTVAL></PHOTO></vCard>",
        );
        assert_eq!(photo_hash(&linked).unwrap(), "");
        let bad = parse("<vCard xmlns='vcard-temp'><PHOTO><BINVAL>*!</BINVAL></PHOTO></vCard>");
        assert!(photo_hash(&bad).is_err());
    }
}
