//! The SASL mechanisms Starling offers (RFC 4422 names), their order of preference in
//! `<mechanisms/>`, and the choice of one from `<auth mechanism='...'/>`.
//!
//! No -PLUS variant is offered: the server does not do channel binding.

use std::fmt;
use std::str::FromStr;

use super::credential::ScramHash;
use super::error::SaslError;

/// A SASL mechanism the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// PLAIN (RFC 4616): the password in clear, so only over TLS unless configured otherwise.
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order they are advertised in.
    pub const ALL: [Mechanism; 3] = [Self::ScramSha256, Self::ScramSha1, Self::Plain];

    /// The registered mechanism name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha1 => "SCRAM-SHA-1",
            Self::Plain => "PLAIN",
        }
    }

    /// The hash of a SCRAM mechanism; `None` for PLAIN.
    pub const fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Self::ScramSha256 => Some(ScramHash::Sha256),
            Self::ScramSha1 => Some(ScramHash::Sha1),
            Self::Plain => None,
        }
    }

    /// The mechanisms to advertise, in order. `plain_allowed` is true on a TLS stream, or
    /// without TLS where the configuration allows PLAIN (`allow_plain_without_tls`).
    pub fn offered(plain_allowed: bool) -> impl Iterator<Item = Mechanism> {
        Self::ALL
            .into_iter()
            .filter(move |m| plain_allowed || *m != Self::Plain)
    }

    /// The mechanism a client selected: `invalid-mechanism` for a name not implemented
    /// (names are case-sensitive, RFC 4422 section 3.1), `encryption-required` for PLAIN
    /// where it is not offered.
    pub fn select(name: &str, plain_allowed: bool) -> Result<Mechanism, SaslError> {
        let mechanism: Mechanism = name.parse()?;
        if mechanism == Self::Plain && !plain_allowed {
            return Err(SaslError::EncryptionRequired);
        }
        Ok(mechanism)
    }
}

impl FromStr for Mechanism {
    type Err = SaslError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or(SaslError::InvalidMechanism)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for m in Mechanism::ALL {
            assert_eq!(m.name().parse::<Mechanism>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!("SCRAM-SHA-256".parse(), Ok(Mechanism::ScramSha256));
        assert_eq!("SCRAM-SHA-1".parse(), Ok(Mechanism::ScramSha1));
        assert_eq!("PLAIN".parse(), Ok(Mechanism::Plain));
    }

    #[test]
    fn unknown_plus_and_lowercase_names_are_invalid() {
        for name in [
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256-PLUS",
            "plain",
            "DIGEST-MD5",
            "",
        ] {
            assert_eq!(
                name.parse::<Mechanism>(),
                Err(SaslError::InvalidMechanism),
                "{name}"
            );
        }
    }

    #[test]
    fn offered_order_and_plain_gate() {
        let with: Vec<_> = Mechanism::offered(true).map(Mechanism::name).collect();
        assert_eq!(with, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
        let without: Vec<_> = Mechanism::offered(false).collect();
        assert_eq!(without, [Mechanism::ScramSha256, Mechanism::ScramSha1]);
    }

    #[test]
    fn select_refuses_plain_without_encryption() {
        assert_eq!(
            Mechanism::select("PLAIN", false),
            Err(SaslError::EncryptionRequired)
        );
        assert_eq!(Mechanism::select("PLAIN", true), Ok(Mechanism::Plain));
        assert_eq!(
            Mechanism::select("SCRAM-SHA-1", false),
            Ok(Mechanism::ScramSha1)
        );
        assert_eq!(
            Mechanism::select("X", true),
            Err(SaslError::InvalidMechanism)
        );
        assert_eq!(Mechanism::ScramSha1.scram_hash(), Some(ScramHash::Sha1));
        assert_eq!(Mechanism::Plain.scram_hash(), None);
    }
}
