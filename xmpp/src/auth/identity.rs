//! Authentication and authorization identities (RFC 6120 sections 6.3.7 and 6.3.8): the
//! SASLprep of usernames, and the rule that a client may only act as its own bare JID.

use starling_core::jid::{BareJid, NodePart};

use super::error::SaslError;

/// SASLprep of a username (RFC 5802 section 5.1, RFC 4616 section 2). A name SASLprep
/// refuses cannot belong to an account, so it fails like an unknown user would.
pub(super) fn prepare_username(raw: &str) -> Result<String, SaslError> {
    match stringprep::saslprep(raw) {
        Ok(prepared) if !prepared.is_empty() => Ok(prepared.into_owned()),
        _ => Err(SaslError::NotAuthorized),
    }
}

/// The bare JID a client is authorized as once `username` has authenticated on `domain`.
/// An absent or empty authzid means the user's own JID; any other authzid must be that
/// same bare JID, or the result is `invalid-authzid`. A username that is no valid JID
/// localpart is `not-authorized`; a `domain` that is no valid domain is a server fault,
/// reported as `temporary-auth-failure`.
pub fn authorize(
    username: &str,
    authzid: Option<&str>,
    domain: &str,
) -> Result<BareJid, SaslError> {
    let node = NodePart::new(username).map_err(|_| SaslError::NotAuthorized)?;
    let jid =
        BareJid::new(&format!("{node}@{domain}")).map_err(|_| SaslError::TemporaryAuthFailure)?;
    match authzid {
        None | Some("") => Ok(jid),
        Some(authzid) => match BareJid::new(authzid) {
            Ok(requested) if requested == jid => Ok(jid),
            _ => Err(SaslError::InvalidAuthzid),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_authzid_is_the_users_own_jid() {
        let jid = authorize("juliet", None, "example.com").unwrap();
        assert_eq!(jid.as_str(), "juliet@example.com");
        assert_eq!(authorize("juliet", Some(""), "example.com").unwrap(), jid);
    }

    #[test]
    fn own_bare_jid_is_accepted_after_normalisation() {
        let jid = authorize("Juliet", Some("juliet@EXAMPLE.com"), "example.com").unwrap();
        assert_eq!(jid.as_str(), "juliet@example.com");
    }

    #[test]
    fn other_identities_are_invalid_authzid() {
        for authzid in [
            "romeo@example.com",
            "juliet@example.org",
            "juliet@example.com/balcony",
            "example.com",
            "not a jid@@",
        ] {
            assert_eq!(
                authorize("juliet", Some(authzid), "example.com"),
                Err(SaslError::InvalidAuthzid),
                "{authzid}"
            );
        }
    }

    #[test]
    fn usernames_that_are_no_localpart_fail() {
        assert_eq!(
            authorize("a@b", None, "example.com"),
            Err(SaslError::NotAuthorized)
        );
        assert_eq!(
            authorize("a/b", None, "example.com"),
            Err(SaslError::NotAuthorized)
        );
        assert_eq!(
            authorize("a", None, ""),
            Err(SaslError::TemporaryAuthFailure)
        );
    }

    #[test]
    fn usernames_are_saslprepped() {
        assert_eq!(prepare_username("user").unwrap(), "user");
        // U+00A0 NO-BREAK SPACE maps to a space, U+00AD SOFT HYPHEN to nothing.
        assert_eq!(prepare_username("a\u{00AD}b\u{00A0}c").unwrap(), "ab c");
        assert_eq!(prepare_username("\u{00AD}"), Err(SaslError::NotAuthorized));
        assert_eq!(prepare_username("a\u{0007}"), Err(SaslError::NotAuthorized));
    }
}
