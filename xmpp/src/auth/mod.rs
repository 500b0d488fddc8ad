//! SASL authentication of client streams (RFC 4422, as RFC 6120 section 6 uses it), server
//! side: SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1 (RFC 5802), their -PLUS variants with
//! channel binding, and PLAIN (RFC 4616), and the
//! salted credentials they are checked against (passwords are never stored).
//!
//! This module owns the mechanisms, the exchanges and the failure conditions. It does no
//! I/O and knows no store: the connection decodes the `<auth/>`/`<response/>` text with
//! [`decode_payload`], looks the user's [`Credentials`] up between the SCRAM client-first
//! and server-first messages, and writes whatever comes back.
//!
//! - `mechanism`: names, order of preference, PLAIN only where allowed, -PLUS only where
//!   the stream can be bound.
//! - `channel_binding`: `tls-exporter` and `tls-server-end-point` data ([`ChannelBindings`]).
//! - `scram`: the SCRAM exchange as a state machine ([`ScramServer`]).
//! - `plain`: PLAIN parsing; its password is checked with [`check_password`].
//! - `hi`: PBKDF2 (`Hi()`) on the raw compression functions, for bulk provisioning speed.
//! - `credential`: [`StoredCredential`] / [`Credentials`], their derivation and text form.
//! - `identity`: SASLprep of usernames, the authzid rule ([`authorize`]).
//! - `error`: [`SaslError`], one variant per RFC 6120 failure condition.
//! - `payload`: the base64 payload of the SASL elements.

mod channel_binding;
mod credential;
mod crypto;
mod error;
mod hi;
mod identity;
mod mechanism;
mod payload;
mod plain;
mod scram;
mod scram_message;

#[cfg(test)]
mod client;

pub use channel_binding::{
    ChannelBindingType, ChannelBindings, EXPORTER_LABEL, EXPORTER_LEN, end_point_hash,
};
pub use credential::{
    CredentialError, Credentials, DEFAULT_ITERATIONS, SALT_LEN, ScramHash, StoredCredential,
    check_password, verify_password,
};
pub use error::{Malformed, SaslError};
pub use identity::authorize;
pub use mechanism::Mechanism;
pub use payload::{decode_payload, encode_payload};
pub use plain::{PLAIN_MAX_FIELD, PlainAuth, parse_plain};
pub use scram::{ClientFirst, ScramServer, ServerFinal};
