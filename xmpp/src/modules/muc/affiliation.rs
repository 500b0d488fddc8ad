//! XEP-0045 5: affiliations (kept per bare JID, outlive a visit) and roles
//! (per visit), and the tables of who may change which. Pure logic: the
//! room asks, nothing here touches a stanza.

use crate::stanza::Condition;

/// XEP-0045 5.2, ordered from least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(value: &str) -> Option<Affiliation> {
        Some(match value {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// XEP-0045 5.1, ordered from least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Some(match value {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// The role an occupant gets on entering (XEP-0045 5.1.2): admins and
/// owners moderate; in a moderated room only members and up have voice.
pub fn default_role(affiliation: Affiliation, moderated: bool) -> Role {
    match affiliation {
        Affiliation::Owner | Affiliation::Admin => Role::Moderator,
        Affiliation::Member => Role::Participant,
        Affiliation::None if moderated => Role::Visitor,
        Affiliation::None => Role::Participant,
        Affiliation::Outcast => Role::None,
    }
}

/// Whether an occupant (`actor`) may give another (`target`) the role
/// `new` (XEP-0045 8.2-8.5, 9.6-9.7): moderators change voice and kick;
/// only admins and owners grant or revoke moderation; nobody but an owner
/// or admin themselves changes an admin's or owner's role.
pub fn may_set_role(
    actor: (Affiliation, Role),
    target: (Affiliation, Role),
    new: Role,
) -> Result<(), Condition> {
    let (actor_affiliation, actor_role) = actor;
    let (target_affiliation, target_role) = target;
    if actor_role != Role::Moderator {
        return Err(Condition::Forbidden);
    }
    if target_affiliation >= Affiliation::Admin && new != Role::Moderator {
        return Err(Condition::NotAllowed);
    }
    let touches_moderation = new == Role::Moderator || target_role == Role::Moderator;
    if touches_moderation && actor_affiliation < Affiliation::Admin {
        return Err(Condition::NotAllowed);
    }
    Ok(())
}

/// Whether `actor` may change an affiliation from `current` to `new`
/// (XEP-0045 9, 10): admins manage members and outcasts; owners manage
/// everyone. The last owner is the room's to protect, not this table's.
pub fn may_set_affiliation(
    actor: Affiliation,
    current: Affiliation,
    new: Affiliation,
) -> Result<(), Condition> {
    match actor {
        Affiliation::Owner => Ok(()),
        Affiliation::Admin if current < Affiliation::Admin && new < Affiliation::Admin => Ok(()),
        Affiliation::Admin => Err(Condition::NotAllowed),
        _ => Err(Condition::Forbidden),
    }
}

/// Who may read an affiliation list (XEP-0045 9.5, 10.5): admins read the
/// members and outcasts, owners every list.
pub fn may_list_affiliation(actor: Affiliation, list: Affiliation) -> bool {
    match list {
        Affiliation::Owner | Affiliation::Admin => actor == Affiliation::Owner,
        _ => actor >= Affiliation::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Affiliation as A;

    #[test]
    fn roles_on_entry_follow_affiliation_and_moderation() {
        assert_eq!(default_role(A::Owner, false), Role::Moderator);
        assert_eq!(default_role(A::Admin, true), Role::Moderator);
        assert_eq!(default_role(A::Member, true), Role::Participant);
        assert_eq!(default_role(A::None, false), Role::Participant);
        assert_eq!(default_role(A::None, true), Role::Visitor);
        assert_eq!(default_role(A::Outcast, false), Role::None);
    }

    #[test]
    fn moderators_kick_and_voice_but_not_admins_or_moderation() {
        let moderator = (A::None, Role::Moderator);
        let participant = (A::None, Role::Participant);
        assert_eq!(may_set_role(moderator, participant, Role::None), Ok(()));
        assert_eq!(may_set_role(moderator, participant, Role::Visitor), Ok(()));
        assert_eq!(
            may_set_role(moderator, (A::Admin, Role::Moderator), Role::None),
            Err(Condition::NotAllowed)
        );
        assert_eq!(
            may_set_role(moderator, participant, Role::Moderator),
            Err(Condition::NotAllowed)
        );
        assert_eq!(
            may_set_role((A::Admin, Role::Moderator), participant, Role::Moderator),
            Ok(())
        );
        assert_eq!(
            may_set_role(participant, (A::None, Role::Visitor), Role::None),
            Err(Condition::Forbidden)
        );
    }

    #[test]
    fn admins_manage_members_and_outcasts_owners_everyone() {
        assert_eq!(may_set_affiliation(A::Admin, A::None, A::Outcast), Ok(()));
        assert_eq!(may_set_affiliation(A::Admin, A::Member, A::None), Ok(()));
        assert_eq!(
            may_set_affiliation(A::Admin, A::Owner, A::Outcast),
            Err(Condition::NotAllowed)
        );
        assert_eq!(
            may_set_affiliation(A::Admin, A::None, A::Admin),
            Err(Condition::NotAllowed)
        );
        assert_eq!(may_set_affiliation(A::Owner, A::Admin, A::Outcast), Ok(()));
        assert_eq!(
            may_set_affiliation(A::Member, A::None, A::Outcast),
            Err(Condition::Forbidden)
        );
        assert!(may_list_affiliation(A::Admin, A::Outcast));
        assert!(!may_list_affiliation(A::Admin, A::Owner));
        assert!(!may_list_affiliation(A::Member, A::Member));
    }

    #[test]
    fn names_round_trip() {
        for affiliation in [A::Outcast, A::None, A::Member, A::Admin, A::Owner] {
            assert_eq!(Affiliation::parse(affiliation.as_str()), Some(affiliation));
        }
        for role in [
            Role::None,
            Role::Visitor,
            Role::Participant,
            Role::Moderator,
        ] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
