//! SASL PLAIN (RFC 4616): parsing `[authzid] NUL authcid NUL passwd`. Checking the password
//! is [`super::credential::check_password`]'s job, against the stored SCRAM credential.

use std::fmt;

use super::error::{Malformed, SaslError};
use super::identity::prepare_username;

/// Longest identity or password accepted. RFC 4616 asks for at least 255 bytes; the cap
/// keeps SASLprep and PBKDF2 work bounded whatever the client sends.
pub const PLAIN_MAX_FIELD: usize = 1024;

/// A parsed PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainAuth {
    /// The identity to act as; `None` when the client sent none.
    pub authzid: Option<String>,
    /// The username, SASLprep'd.
    pub authcid: String,
    /// The password as sent; [`super::credential::verify_password`] prepares it.
    pub password: String,
}

/// Parses the decoded PLAIN payload. Syntax errors are `malformed-request`; a username
/// SASLprep refuses is `not-authorized`, like any unknown user.
pub fn parse_plain(message: &[u8]) -> Result<PlainAuth, SaslError> {
    let mut fields = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Malformed::PlainSeparators.into());
    };
    let [authzid, authcid, password] = [authzid, authcid, password].map(utf8_field);
    let (authzid, authcid, password) = (authzid?, authcid?, password?);
    if authcid.is_empty() || password.is_empty() {
        return Err(Malformed::PlainEmpty.into());
    }
    Ok(PlainAuth {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid: prepare_username(authcid)?,
        password: password.to_owned(),
    })
}

fn utf8_field(bytes: &[u8]) -> Result<&str, SaslError> {
    if bytes.len() > PLAIN_MAX_FIELD {
        return Err(Malformed::TooLong(PLAIN_MAX_FIELD).into());
    }
    std::str::from_utf8(bytes).map_err(|_| Malformed::NotUtf8.into())
}

impl fmt::Debug for PlainAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainAuth")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::plain_message;
    use super::super::credential::Credentials;
    use super::*;

    #[test]
    fn parses_rfc4616_example() {
        let auth = parse_plain(b"\0tim\0tanstaaftanstaaf").unwrap();
        assert_eq!(auth.authzid, None);
        assert_eq!(auth.authcid, "tim");
        assert_eq!(auth.password, "tanstaaftanstaaf");

        let auth = parse_plain(b"Ursel\0Kurt\0xipj3plmq").unwrap();
        assert_eq!(auth.authzid.as_deref(), Some("Ursel"));
        assert_eq!(auth.authcid, "Kurt");
    }

    #[test]
    fn round_trip_against_stored_credentials() {
        let creds = Credentials::with_iterations("s\u{00E9}same", 16);
        let auth = parse_plain(&plain_message(
            Some("ali@example.com"),
            "ali",
            "s\u{00E9}same",
        ))
        .unwrap();
        assert_eq!(auth.authzid.as_deref(), Some("ali@example.com"));
        assert!(creds.verify_password(&auth.password));
        let auth = parse_plain(&plain_message(None, "ali", "sesame")).unwrap();
        assert!(!creds.verify_password(&auth.password));
    }

    #[test]
    fn separators_are_counted() {
        for message in [&b""[..], b"tim", b"\0tim", b"\0tim\0pw\0", b"a\0b\0c\0d"] {
            assert_eq!(
                parse_plain(message),
                Err(Malformed::PlainSeparators.into()),
                "{message:?}"
            );
        }
    }

    #[test]
    fn empty_identity_or_password_is_malformed() {
        assert_eq!(parse_plain(b"\0\0pw"), Err(Malformed::PlainEmpty.into()));
        assert_eq!(parse_plain(b"\0tim\0"), Err(Malformed::PlainEmpty.into()));
    }

    #[test]
    fn invalid_utf8_and_long_fields_are_malformed() {
        assert_eq!(parse_plain(b"\0t\xffm\0pw"), Err(Malformed::NotUtf8.into()));
        let mut long = b"\0tim\0".to_vec();
        long.extend(std::iter::repeat_n(b'x', PLAIN_MAX_FIELD + 1));
        assert_eq!(
            parse_plain(&long),
            Err(Malformed::TooLong(PLAIN_MAX_FIELD).into())
        );
        let mut at_limit = b"\0tim\0".to_vec();
        at_limit.extend(std::iter::repeat_n(b'x', PLAIN_MAX_FIELD));
        assert!(parse_plain(&at_limit).is_ok());
    }

    #[test]
    fn authcid_is_saslprepped_and_refused_names_are_not_authorized() {
        assert_eq!(parse_plain(b"\0ti\xc2\xadm\0pw").unwrap().authcid, "tim");
        assert_eq!(parse_plain(b"\0ti\x07m\0pw"), Err(SaslError::NotAuthorized));
    }

    #[test]
    fn debug_hides_the_password() {
        let auth = parse_plain(b"\0tim\0secret-word").unwrap();
        assert!(!format!("{auth:?}").contains("secret-word"));
    }
}
