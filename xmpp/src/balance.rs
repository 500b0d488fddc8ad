//! The load-balancing policy: which member a client should connect to.
//!
//! One pure function over the cluster status drives both `/lb/{username}`
//! and the c2s see-other-host redirect (RFC 6120 4.9.3.19), and its web
//! equivalents (RFC 7395 see-other-uri, XEP-0124 `see-other-uri`): a user who
//! already has a session goes back to that member (so all of a user's
//! resources share a node); anyone else goes to the up member with the most
//! free capacity, a member's capacity being its configured
//! `c2s.max_connections` (0: the open-file cap, which is only known for this
//! node, so the caller supplies an estimate for the others).

use starling_core::cluster::{MemberRow, PeerState};
use starling_core::jid::BareJid;

use crate::server::Server;

/// What the policy needs besides the member list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    /// The member where the user already has a session, if any.
    pub current: Option<u64>,
    /// A member that must not be chosen (this node, when it is full).
    pub exclude: Option<u64>,
    /// The capacity assumed for a member configured with
    /// `max_connections = 0`.
    pub unlimited_capacity: u64,
}

/// Sessions a member may still take under the policy.
pub(crate) fn free_capacity(member: &MemberRow, unlimited_capacity: u64) -> u64 {
    let capacity = match member.max_connections {
        0 => unlimited_capacity,
        configured => u64::from(configured),
    };
    capacity.saturating_sub(member.sessions as u64)
}

/// The member a client should connect to, or `None` when no up member has
/// room. Stickiness wins over load: a user's existing member is chosen as
/// long as it is up, even when full, because its other sessions are there.
pub(crate) fn choose(members: &[MemberRow], request: Request) -> Option<&MemberRow> {
    let eligible = |member: &&MemberRow| {
        member.member && member.state == PeerState::Up && Some(member.id) != request.exclude
    };
    if let Some(current) = request.current {
        if let Some(home) = members
            .iter()
            .filter(eligible)
            .find(|member| member.id == current)
        {
            return Some(home);
        }
    }
    members
        .iter()
        .filter(eligible)
        .map(|member| (free_capacity(member, request.unlimited_capacity), member))
        .filter(|(free, _)| *free > 0)
        // Most room first; equal room: the lower id, so every node answers alike.
        .max_by(|(free_a, a), (free_b, b)| free_a.cmp(free_b).then(b.id.cmp(&a.id)))
        .map(|(_, member)| member)
}

/// The capacity assumed for members configured with `max_connections = 0`:
/// this node's own open-file cap, the best guess for nodes set up alike.
pub(crate) fn unlimited_capacity() -> u64 {
    crate::c2s::listener::connection_cap(0) as u64
}

/// The member `user` should connect to, as this node sees the cluster.
pub(crate) fn member_for_user(server: &Server, user: &BareJid) -> Option<MemberRow> {
    let status = server.cluster.status();
    let current = if server.sessions.has_resources(user) {
        Some(status.this_node)
    } else {
        server
            .cluster
            .remote_resources(user)
            .first()
            .map(|entry| entry.node.0)
    };
    let request = Request {
        current,
        exclude: None,
        unlimited_capacity: unlimited_capacity(),
    };
    choose(&status.members, request).cloned()
}

/// Where a new client stream goes when this node is full: the c2s address
/// of another member with room, for `<see-other-host/>`.
pub(crate) fn see_other_host(server: &Server) -> Option<String> {
    let status = server.cluster.status();
    let request = Request {
        current: None,
        exclude: Some(status.this_node),
        unlimited_capacity: unlimited_capacity(),
    };
    choose(&status.members, request)
        .map(|member| member.c2s_addr.clone())
        .filter(|addr| !addr.is_empty())
}

/// The web endpoint a see-other-uri redirect names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebEndpoint {
    /// `/xmpp-websocket` with a `ws(s)://` scheme (RFC 7395 3.6.1).
    WebSocket,
    /// `/http-bind` (XEP-0124's `see-other-uri` terminal condition).
    Bosh,
}

/// Where a new web client goes when this node is full: the endpoint on the
/// web URL (`[http] public_url`, else from the HTTP bind address) of
/// another member with room. A client on HTTPS is never sent to plain HTTP
/// (RFC 7395 3.6.1 has clients refuse a lower security context), so such
/// members are left out before choosing.
pub(crate) fn see_other_uri(server: &Server, endpoint: WebEndpoint) -> Option<String> {
    let status = server.cluster.status();
    let secure = server.config.http.tls;
    let members: Vec<MemberRow> = status
        .members
        .into_iter()
        .filter(|member| web_endpoint(&member.web_url, endpoint, secure).is_some())
        .collect();
    let request = Request {
        current: None,
        exclude: Some(status.this_node),
        unlimited_capacity: unlimited_capacity(),
    };
    choose(&members, request).and_then(|member| web_endpoint(&member.web_url, endpoint, secure))
}

/// `endpoint` under a member's web URL, or `None` when the URL is unusable
/// (empty, not http(s), or plain HTTP while the client came over HTTPS).
fn web_endpoint(web_url: &str, endpoint: WebEndpoint, secure: bool) -> Option<String> {
    let base = web_url.trim_end_matches('/');
    let (tls, rest) = if let Some(rest) = base.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = base.strip_prefix("http://") {
        (false, rest)
    } else {
        return None;
    };
    if rest.is_empty() || (secure && !tls) {
        return None;
    }
    Some(match (endpoint, tls) {
        (WebEndpoint::WebSocket, true) => format!("wss://{rest}/xmpp-websocket"),
        (WebEndpoint::WebSocket, false) => format!("ws://{rest}/xmpp-websocket"),
        (WebEndpoint::Bosh, _) => format!("{base}/http-bind"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, max_connections: u32, sessions: usize) -> MemberRow {
        MemberRow {
            id,
            name: format!("node{id}"),
            cluster_addr: String::new(),
            c2s_addr: format!("127.0.0.1:{}", 5221 + id),
            http_addr: format!("127.0.0.1:{}", 5279 + id),
            web_url: format!("https://127.0.0.1:{}", 5279 + id),
            max_connections,
            incarnation: 1,
            joined_at_ms: 0,
            member: true,
            senior: id == 1,
            state: PeerState::Up,
            sessions,
            client_stanzas: 0,
            link: None,
            view_agrees: true,
        }
    }

    fn anyone() -> Request {
        Request {
            current: None,
            exclude: None,
            unlimited_capacity: 1000,
        }
    }

    fn chosen(members: &[MemberRow], request: Request) -> Option<u64> {
        choose(members, request).map(|member| member.id)
    }

    #[test]
    fn the_member_with_most_room_wins() {
        let members = [member(1, 2, 0), member(2, 3, 0), member(3, 5, 1)];
        assert_eq!(chosen(&members, anyone()), Some(3), "4 free beats 3 and 2");
        let members = [member(1, 2, 0), member(2, 3, 0), member(3, 5, 2)];
        assert_eq!(
            chosen(&members, anyone()),
            Some(2),
            "a tie goes to the lower id"
        );
    }

    #[test]
    fn filling_a_cluster_respects_every_capacity() {
        let mut members = vec![member(1, 2, 0), member(2, 3, 0), member(3, 5, 0)];
        for _ in 0..10 {
            let id = chosen(&members, anyone()).expect("room left");
            members[id as usize - 1].sessions += 1;
        }
        let sessions: Vec<usize> = members.iter().map(|m| m.sessions).collect();
        assert_eq!(sessions, [2, 3, 5]);
        assert_eq!(
            chosen(&members, anyone()),
            None,
            "a full cluster has no answer"
        );
    }

    #[test]
    fn a_user_with_a_session_goes_back_to_its_member_even_when_full() {
        let members = [member(1, 2, 2), member(2, 3, 0)];
        let request = Request {
            current: Some(1),
            ..anyone()
        };
        assert_eq!(chosen(&members, request), Some(1));
    }

    #[test]
    fn members_that_are_not_up_or_not_members_are_skipped() {
        let mut members = vec![member(1, 10, 0), member(2, 10, 5), member(3, 10, 9)];
        members[0].state = PeerState::Suspect;
        members[1].member = false;
        assert_eq!(chosen(&members, anyone()), Some(3));
        let request = Request {
            current: Some(1),
            ..anyone()
        };
        assert_eq!(
            chosen(&members, request),
            Some(3),
            "a suspect home is not sticky"
        );
        members[2].state = PeerState::Down;
        assert_eq!(chosen(&members, anyone()), None);
    }

    #[test]
    fn the_excluded_member_is_never_chosen() {
        let members = [member(1, 100, 0), member(2, 3, 2)];
        let request = Request {
            exclude: Some(1),
            ..anyone()
        };
        assert_eq!(chosen(&members, request), Some(2));
        let request = Request {
            current: Some(1),
            exclude: Some(1),
            ..anyone()
        };
        assert_eq!(chosen(&members, request), Some(2));
    }

    #[test]
    fn web_endpoints_follow_the_scheme_and_never_lower_security() {
        use WebEndpoint::{Bosh, WebSocket};
        assert_eq!(
            web_endpoint("https://node2.example.com/", WebSocket, true).as_deref(),
            Some("wss://node2.example.com/xmpp-websocket")
        );
        assert_eq!(
            web_endpoint("https://example.com/xmpp", Bosh, true).as_deref(),
            Some("https://example.com/xmpp/http-bind")
        );
        assert_eq!(
            web_endpoint("http://127.0.0.1:5281", WebSocket, false).as_deref(),
            Some("ws://127.0.0.1:5281/xmpp-websocket")
        );
        assert_eq!(
            web_endpoint("http://127.0.0.1:5281", Bosh, false).as_deref(),
            Some("http://127.0.0.1:5281/http-bind")
        );
        assert_eq!(web_endpoint("http://127.0.0.1:5281", WebSocket, true), None);
        assert_eq!(web_endpoint("http://127.0.0.1:5281", Bosh, true), None);
        assert_eq!(web_endpoint("", WebSocket, false), None);
        assert_eq!(web_endpoint("ftp://x", Bosh, false), None);
        assert_eq!(web_endpoint("https://", Bosh, true), None);
    }

    #[test]
    fn unconfigured_capacity_uses_the_estimate() {
        let members = [member(1, 0, 10), member(2, 50, 0)];
        let request = Request {
            unlimited_capacity: 100,
            ..anyone()
        };
        assert_eq!(chosen(&members, request), Some(1), "90 free beats 50");
        let request = Request {
            unlimited_capacity: 10,
            ..anyone()
        };
        assert_eq!(
            chosen(&members, request),
            Some(2),
            "an estimate of 10 is full"
        );
    }
}
