//! The SASL mechanisms Starling offers (RFC 4422 names), their order of preference in
//! `<mechanisms/>`, and the choice of one from `<auth mechanism='...'/>`.
//!
//! The -PLUS variants (SCRAM with channel binding) are offered only on a stream that has
//! something to bind to (see [`super::ChannelBindings`]).

use std::fmt;
use std::str::FromStr;

use super::credential::ScramHash;
use super::error::SaslError;

/// A SASL mechanism the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-256-PLUS: SCRAM-SHA-256 bound to the TLS channel.
    ScramSha256Plus,
    /// SCRAM-SHA-1-PLUS: SCRAM-SHA-1 bound to the TLS channel.
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// PLAIN (RFC 4616): the password in clear, so only over TLS unless configured otherwise.
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order they are advertised in.
    pub const ALL: [Mechanism; 5] = [
        Self::ScramSha256Plus,
        Self::ScramSha1Plus,
        Self::ScramSha256,
        Self::ScramSha1,
        Self::Plain,
    ];

    /// The registered mechanism name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Self::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha1 => "SCRAM-SHA-1",
            Self::Plain => "PLAIN",
        }
    }

    /// The hash of a SCRAM mechanism; `None` for PLAIN.
    pub const fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Self::ScramSha256 | Self::ScramSha256Plus => Some(ScramHash::Sha256),
            Self::ScramSha1 | Self::ScramSha1Plus => Some(ScramHash::Sha1),
            Self::Plain => None,
        }
    }

    /// Whether this is a SCRAM mechanism with channel binding.
    pub const fn is_plus(self) -> bool {
        matches!(self, Self::ScramSha256Plus | Self::ScramSha1Plus)
    }

    /// The mechanisms to advertise, in order. `plain_allowed` is true on a TLS stream, or
    /// without TLS where the configuration allows PLAIN (`allow_plain_without_tls`);
    /// `plus` when the stream has a channel binding to offer.
    pub fn offered(plain_allowed: bool, plus: bool) -> impl Iterator<Item = Mechanism> {
        Self::ALL
            .into_iter()
            .filter(move |m| plain_allowed || *m != Self::Plain)
            .filter(move |m| plus || !m.is_plus())
    }

    /// The mechanism a client selected: `invalid-mechanism` for a name not implemented
    /// (names are case-sensitive, RFC 4422 section 3.1) or a -PLUS one not offered here,
    /// `encryption-required` for PLAIN where it is not offered.
    pub fn select(name: &str, plain_allowed: bool, plus: bool) -> Result<Mechanism, SaslError> {
        let mechanism: Mechanism = name.parse()?;
        if mechanism == Self::Plain && !plain_allowed {
            return Err(SaslError::EncryptionRequired);
        }
        if mechanism.is_plus() && !plus {
            return Err(SaslError::InvalidMechanism);
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
        assert_eq!("SCRAM-SHA-1-PLUS".parse(), Ok(Mechanism::ScramSha1Plus));
        assert_eq!("SCRAM-SHA-256-PLUS".parse(), Ok(Mechanism::ScramSha256Plus));
    }

    #[test]
    fn unknown_and_lowercase_names_are_invalid() {
        for name in [
            "SCRAM-SHA-512-PLUS",
            "scram-sha-1-plus",
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
        let with: Vec<_> = Mechanism::offered(true, false)
            .map(Mechanism::name)
            .collect();
        assert_eq!(with, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
        let without: Vec<_> = Mechanism::offered(false, false).collect();
        assert_eq!(without, [Mechanism::ScramSha256, Mechanism::ScramSha1]);
        let plus: Vec<_> = Mechanism::offered(true, true)
            .map(Mechanism::name)
            .collect();
        assert_eq!(
            plus,
            [
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-1-PLUS",
                "SCRAM-SHA-256",
                "SCRAM-SHA-1",
                "PLAIN"
            ]
        );
    }

    #[test]
    fn select_refuses_plain_without_encryption() {
        assert_eq!(
            Mechanism::select("PLAIN", false, false),
            Err(SaslError::EncryptionRequired)
        );
        assert_eq!(
            Mechanism::select("PLAIN", true, false),
            Ok(Mechanism::Plain)
        );
        assert_eq!(
            Mechanism::select("SCRAM-SHA-1", false, false),
            Ok(Mechanism::ScramSha1)
        );
        assert_eq!(
            Mechanism::select("X", true, true),
            Err(SaslError::InvalidMechanism)
        );
        assert_eq!(
            Mechanism::select("SCRAM-SHA-256-PLUS", true, false),
            Err(SaslError::InvalidMechanism)
        );
        assert_eq!(
            Mechanism::select("SCRAM-SHA-256-PLUS", true, true),
            Ok(Mechanism::ScramSha256Plus)
        );
        assert_eq!(Mechanism::ScramSha1Plus.scram_hash(), Some(ScramHash::Sha1));
        assert_eq!(Mechanism::ScramSha1.scram_hash(), Some(ScramHash::Sha1));
        assert_eq!(Mechanism::Plain.scram_hash(), None);
    }
}
