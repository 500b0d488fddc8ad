//! XEP-0045 10.2: a room's configuration and its `muc#roomconfig` form.

use serde::{Deserialize, Serialize};
use starling_core::xml::Element;

use crate::pubsub::form::{FormBuilder, Submitted, parse_bool};
use crate::stanza::{Condition, StanzaError};

pub const FORM_TYPE: &str = "http://jabber.org/protocol/muc#roomconfig";

/// Who sees an occupant's real JID (`muc#roomconfig_whois`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Whois {
    Anyone,
    Moderators,
}

/// Who may send private messages through the room (`muc#roomconfig_allowpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    None,
}

impl Whois {
    fn as_str(self) -> &'static str {
        match self {
            Whois::Anyone => "anyone",
            Whois::Moderators => "moderators",
        }
    }
}

impl AllowPm {
    fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }
}

/// A room's settings; `[modules.muc.default_room]` gives new rooms theirs.
/// Stored as JSON with the room, so a field added later reads its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// The room's password; empty: none.
    pub password: String,
    pub whois: Whois,
    /// Most occupants; 0 means the service's limit.
    pub max_users: u32,
    /// Participants may change the subject (moderators always may).
    pub change_subject: bool,
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
    /// The room's messages are archived (announced with status 170).
    pub logging: bool,
    /// Occupants may send iqs to each other through the room (vCards
    /// included).
    pub allow_query_users: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: String::new(),
            whois: Whois::Moderators,
            max_users: 100,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            logging: false,
            allow_query_users: true,
        }
    }
}

impl RoomConfig {
    /// The form an owner fills in (XEP-0045 10.2).
    pub fn to_form(&self) -> Element {
        let mut form = FormBuilder::new("form", FORM_TYPE);
        form.field(
            "muc#roomconfig_roomname",
            "text-single",
            Some("Name"),
            &[&self.name],
        );
        form.field(
            "muc#roomconfig_roomdesc",
            "text-single",
            Some("Description"),
            &[&self.description],
        );
        form.boolean(
            "muc#roomconfig_persistentroom",
            "Persistent",
            self.persistent,
        );
        form.boolean("muc#roomconfig_publicroom", "Listed publicly", self.public);
        form.boolean(
            "muc#roomconfig_membersonly",
            "Members only",
            self.members_only,
        );
        form.boolean("muc#roomconfig_moderatedroom", "Moderated", self.moderated);
        form.boolean(
            "muc#roomconfig_passwordprotectedroom",
            "Password protected",
            !self.password.is_empty(),
        );
        form.field(
            "muc#roomconfig_roomsecret",
            "text-private",
            Some("Password"),
            &[&self.password],
        );
        form.list(
            "muc#roomconfig_whois",
            "Who may see real JIDs",
            self.whois.as_str(),
            &["moderators", "anyone"],
        );
        form.field(
            "muc#roomconfig_maxusers",
            "text-single",
            Some("Most occupants"),
            &[&self.max_users.to_string()],
        );
        form.boolean(
            "muc#roomconfig_changesubject",
            "Participants may change the subject",
            self.change_subject,
        );
        form.boolean(
            "muc#roomconfig_allowinvites",
            "Participants may invite",
            self.allow_invites,
        );
        form.list(
            "muc#roomconfig_allowpm",
            "Who may send private messages",
            self.allow_pm.as_str(),
            &["anyone", "participants", "moderators", "none"],
        );
        form.boolean("muc#roomconfig_enablelogging", "Archived", self.logging);
        // Not in XEP-0045's registry; the name other servers use.
        form.boolean(
            "allow_query_users",
            "Occupants may send requests to each other",
            self.allow_query_users,
        );
        form.build()
    }

    /// The configuration with a submitted form's fields applied; fields it
    /// leaves out keep their value, a value that does not parse is refused.
    pub fn apply(&self, form: &Submitted) -> Result<RoomConfig, StanzaError> {
        if let Some(form_type) = &form.form_type {
            if form_type != FORM_TYPE {
                return Err(bad(format!("FORM_TYPE must be {FORM_TYPE}")));
            }
        }
        let mut next = self.clone();
        let mut password_protected = None;
        for (var, values) in &form.fields {
            let value = values.first().map(String::as_str).unwrap_or("");
            let flag = || parse_bool(value).ok_or_else(|| bad(format!("{var}: not a boolean")));
            match var.as_str() {
                "muc#roomconfig_roomname" => next.name = value.to_owned(),
                "muc#roomconfig_roomdesc" => next.description = value.to_owned(),
                "muc#roomconfig_persistentroom" => next.persistent = flag()?,
                "muc#roomconfig_publicroom" => next.public = flag()?,
                "muc#roomconfig_membersonly" => next.members_only = flag()?,
                "muc#roomconfig_moderatedroom" => next.moderated = flag()?,
                "muc#roomconfig_passwordprotectedroom" => password_protected = Some(flag()?),
                "muc#roomconfig_roomsecret" => next.password = value.to_owned(),
                "muc#roomconfig_whois" => {
                    next.whois = match value {
                        "anyone" => Whois::Anyone,
                        "moderators" => Whois::Moderators,
                        _ => return Err(bad(format!("{var}: {value:?} is not an option"))),
                    }
                }
                "muc#roomconfig_maxusers" => {
                    next.max_users = match value {
                        "" | "none" => 0,
                        number => number
                            .parse()
                            .map_err(|_| bad(format!("{var}: not a number")))?,
                    }
                }
                "muc#roomconfig_changesubject" => next.change_subject = flag()?,
                "muc#roomconfig_allowinvites" => next.allow_invites = flag()?,
                "muc#roomconfig_allowpm" => {
                    next.allow_pm = match value {
                        "anyone" => AllowPm::Anyone,
                        "participants" => AllowPm::Participants,
                        "moderators" => AllowPm::Moderators,
                        "none" => AllowPm::None,
                        _ => return Err(bad(format!("{var}: {value:?} is not an option"))),
                    }
                }
                "muc#roomconfig_enablelogging" => next.logging = flag()?,
                "allow_query_users" => next.allow_query_users = flag()?,
                // Fields of other servers' forms: ignored, as XEP-0004 allows.
                _ => {}
            }
        }
        if password_protected == Some(false) {
            next.password.clear();
        }
        if password_protected == Some(true) && next.password.is_empty() {
            return Err(bad("a password-protected room needs a password".to_owned()));
        }
        Ok(next)
    }

    /// The disco#info features that describe the room (XEP-0045 6.4).
    pub fn features(&self) -> Vec<&'static str> {
        let mut features = vec![
            if self.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if self.public {
                "muc_public"
            } else {
                "muc_hidden"
            },
            if self.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if self.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if self.password.is_empty() {
                "muc_unsecured"
            } else {
                "muc_passwordprotected"
            },
            if self.whois == Whois::Anyone {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            },
        ];
        features.push("urn:xmpp:occupant-id:0");
        features
    }
}

fn bad(text: String) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_round_trips_the_configuration() {
        let config = RoomConfig {
            name: "Tea".into(),
            persistent: true,
            members_only: true,
            password: "s3cret".into(),
            whois: Whois::Anyone,
            max_users: 7,
            allow_pm: AllowPm::Moderators,
            allow_query_users: false,
            ..RoomConfig::default()
        };
        let mut form = config.to_form();
        form.set_attr("type", "submit");
        let read = RoomConfig::default()
            .apply(&Submitted::parse(&form))
            .unwrap();
        assert_eq!(read, config);
    }

    #[test]
    fn bad_values_are_refused_and_missing_fields_kept() {
        let mut submitted = Submitted::default();
        submitted
            .fields
            .insert("muc#roomconfig_moderatedroom".into(), vec!["maybe".into()]);
        assert!(RoomConfig::default().apply(&submitted).is_err());
        let empty = Submitted::default();
        assert_eq!(
            RoomConfig::default().apply(&empty).unwrap(),
            RoomConfig::default()
        );
    }
}
