//! RFC 6120 section 6.5 SASL failure conditions: one [`SaslError`] variant per `<failure/>`
//! child, so the connection turns any authentication error into exactly one element.

/// An authentication failure, as the `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`
/// the connection sends. The `Display` text is meant for the failure's `<text/>`: it never
/// says whether an account exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `<abort/>`.
    #[error("the exchange was aborted")]
    Aborted,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the credentials have expired")]
    CredentialsExpired,
    /// The mechanism (PLAIN) is not allowed on an unencrypted stream.
    #[error("this mechanism needs an encrypted stream")]
    EncryptionRequired,
    /// The `<auth/>` or `<response/>` text is not base64.
    #[error("the payload is not valid base64")]
    IncorrectEncoding(#[source] base64::DecodeError),
    /// The authorization identity is not the authenticated user's own bare JID.
    #[error("the authorization identity is not allowed")]
    InvalidAuthzid,
    #[error("the mechanism is not offered")]
    InvalidMechanism,
    /// The decoded payload breaks the mechanism's syntax.
    #[error("malformed request: {0}")]
    MalformedRequest(#[from] Malformed),
    #[error("the mechanism is too weak for this account")]
    MechanismTooWeak,
    /// Wrong password, unknown user, or a proof (or channel binding) that does not match
    /// the exchange.
    #[error("authentication failed")]
    NotAuthorized,
    /// The GS2 flag `y` ("I could bind, I believe the server cannot") on a stream where
    /// -PLUS was offered: the offer was removed on the way, so the exchange is refused
    /// (RFC 5802 section 6). Sent as `not-authorized`, but no password was tried.
    #[error("channel binding was offered but the client did not see it: possible downgrade")]
    BindingDowngrade,
    /// The server could not finish the check (e.g. the store did not answer).
    #[error("temporary authentication failure, try again later")]
    TemporaryAuthFailure,
}

impl SaslError {
    /// A refusal about channel binding made before any password was tried: the client
    /// and the server do not share a binding type, or the offer of -PLUS did not reach the
    /// client. A legitimate client meets these while finding a mechanism that works
    /// (one bound to a type we lack, then one with `y`), so they are not counted as
    /// failed attempts.
    pub fn is_binding_mismatch(&self) -> bool {
        matches!(
            self,
            Self::BindingDowngrade
                | Self::MalformedRequest(
                    Malformed::UnsupportedBindingType(_)
                        | Malformed::PlusWithoutBinding
                        | Malformed::BindingWithoutPlus
                )
        )
    }

    /// The name of the RFC 6120 failure condition element.
    pub fn condition(&self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::AccountDisabled => "account-disabled",
            Self::CredentialsExpired => "credentials-expired",
            Self::EncryptionRequired => "encryption-required",
            Self::IncorrectEncoding(_) => "incorrect-encoding",
            Self::InvalidAuthzid => "invalid-authzid",
            Self::InvalidMechanism => "invalid-mechanism",
            Self::MalformedRequest(_) => "malformed-request",
            Self::MechanismTooWeak => "mechanism-too-weak",
            Self::NotAuthorized | Self::BindingDowngrade => "not-authorized",
            Self::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// What is wrong with a malformed SCRAM or PLAIN message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the message is not UTF-8")]
    NotUtf8,
    #[error("the GS2 header is invalid")]
    Gs2Header,
    /// A `p=` GS2 flag with a mechanism that is not -PLUS.
    #[error("channel binding was requested with a mechanism that is not -PLUS")]
    BindingWithoutPlus,
    /// A -PLUS mechanism with the GS2 flag `n` or `y`.
    #[error("a -PLUS mechanism needs the GS2 flag p=<channel-binding type>")]
    PlusWithoutBinding,
    /// A `p=` channel-binding type this stream does not offer.
    #[error("the channel-binding type {0:?} is not offered on this stream")]
    UnsupportedBindingType(String),
    /// An `m=` attribute, which RFC 5802 reserves for extensions the server must understand.
    #[error("mandatory extensions are not supported")]
    MandatoryExtension,
    #[error("expected the `{0}` attribute")]
    MissingAttribute(char),
    #[error("an attribute is not of the form `a=value`")]
    Attribute,
    #[error("a saslname has a bad `=` escape or is empty")]
    Saslname,
    #[error("the nonce is empty or has characters outside printable ASCII or a comma")]
    Nonce,
    #[error("the `{attribute}` attribute is not valid base64")]
    Base64 {
        attribute: char,
        #[source]
        source: base64::DecodeError,
    },
    #[error("the proof is {found} bytes long, expected {expected}")]
    ProofLength { expected: usize, found: usize },
    #[error("a PLAIN message needs two NUL separators")]
    PlainSeparators,
    #[error("a PLAIN identity or password is empty")]
    PlainEmpty,
    #[error("a field is longer than {0} bytes")]
    TooLong(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_rfc6120_element_names() {
        let bad_base64 = base64::DecodeError::InvalidPadding;
        let all = [
            (SaslError::Aborted, "aborted"),
            (SaslError::AccountDisabled, "account-disabled"),
            (SaslError::CredentialsExpired, "credentials-expired"),
            (SaslError::EncryptionRequired, "encryption-required"),
            (
                SaslError::IncorrectEncoding(bad_base64),
                "incorrect-encoding",
            ),
            (SaslError::InvalidAuthzid, "invalid-authzid"),
            (SaslError::InvalidMechanism, "invalid-mechanism"),
            (Malformed::Nonce.into(), "malformed-request"),
            (SaslError::MechanismTooWeak, "mechanism-too-weak"),
            (SaslError::NotAuthorized, "not-authorized"),
            (SaslError::BindingDowngrade, "not-authorized"),
            (SaslError::TemporaryAuthFailure, "temporary-auth-failure"),
        ];
        for (error, condition) in all {
            assert_eq!(error.condition(), condition);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn malformed_text_keeps_the_reason() {
        let error = SaslError::from(Malformed::MissingAttribute('r'));
        assert_eq!(
            error.to_string(),
            "malformed request: expected the `r` attribute"
        );
    }
}
