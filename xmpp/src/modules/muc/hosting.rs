//! Which member hosts a room: rendezvous (highest random weight) hashing
//! over the members that are up or suspect. Every member computes the same answer
//! from its own view of the membership, and a member joining or leaving
//! moves only the rooms whose best score it has (or had).

use starling_core::cluster::NodeId;

/// The member with the highest score for `room`, or `None` with no members.
pub fn host_of(room: &str, members: &[NodeId]) -> Option<NodeId> {
    members
        .iter()
        .copied()
        .max_by_key(|node| (score(room, *node), node.0))
}

/// A stable 64-bit score: FNV-1a over the room and the member id, then
/// the splitmix64 finaliser so that nearby ids spread out. Stable across
/// processes and versions, unlike the standard library's hasher.
fn score(room: &str, node: NodeId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in room.bytes().chain(node.0.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Vec<String> {
        (0..1000)
            .map(|i| format!("room{i}@conference.example.com"))
            .collect()
    }

    #[test]
    fn no_members_no_host_one_member_hosts_everything() {
        assert_eq!(host_of("a@c", &[]), None);
        assert_eq!(host_of("a@c", &[NodeId(7)]), Some(NodeId(7)));
    }

    #[test]
    fn the_answer_does_not_depend_on_the_order_of_members() {
        let forward = [NodeId(1), NodeId(2), NodeId(3)];
        let backward = [NodeId(3), NodeId(2), NodeId(1)];
        for room in rooms() {
            assert_eq!(host_of(&room, &forward), host_of(&room, &backward));
        }
    }

    #[test]
    fn rooms_spread_over_members() {
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let mut counts = [0usize; 3];
        for room in rooms() {
            let host = host_of(&room, &members).unwrap();
            counts[(host.0 - 1) as usize] += 1;
        }
        assert!(counts.iter().all(|&count| count > 250), "{counts:?}");
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_rooms() {
        let all = [NodeId(1), NodeId(2), NodeId(3)];
        let without_two = [NodeId(1), NodeId(3)];
        for room in rooms() {
            let before = host_of(&room, &all).unwrap();
            let after = host_of(&room, &without_two).unwrap();
            if before != NodeId(2) {
                assert_eq!(before, after, "{room} moved though its host stayed");
            }
        }
    }

    #[test]
    fn a_member_joining_takes_rooms_only_for_itself() {
        let before = [NodeId(1), NodeId(2)];
        let after = [NodeId(1), NodeId(2), NodeId(3)];
        for room in rooms() {
            let old = host_of(&room, &before).unwrap();
            let new = host_of(&room, &after).unwrap();
            assert!(new == old || new == NodeId(3), "{room}: {old} -> {new}");
        }
    }
}
