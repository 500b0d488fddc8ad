//! Where a remote domain's servers are (RFC 6120 3.2, XEP-0368): a static
//! route from `[s2s.routes]`, else the DNS SRV records `_xmpps-server._tcp`
//! (direct TLS) and `_xmpp-server._tcp` merged by priority, else the
//! domain's own address records on port 5269. DNS goes through the system
//! resolver configuration (`/etc/resolv.conf`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use tokio::sync::OnceCell;

const DEFAULT_PORT: u16 = 5269;

/// One place to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    /// XEP-0368: TLS from the first byte instead of STARTTLS.
    pub direct_tls: bool,
}

pub(crate) struct Resolver {
    routes: BTreeMap<String, String>,
    dns: OnceCell<Result<TokioResolver, String>>,
}

impl Resolver {
    pub(crate) fn new(routes: BTreeMap<String, String>) -> Resolver {
        Resolver {
            routes: routes
                .into_iter()
                .map(|(domain, target)| (domain.to_ascii_lowercase(), target))
                .collect(),
            dns: OnceCell::new(),
        }
    }

    /// The servers of `domain`, best first; `Err` says why there are none.
    pub(crate) async fn targets(&self, domain: &str) -> Result<Vec<Target>, String> {
        if let Some(route) = self.routes.get(&domain.to_ascii_lowercase()) {
            let (host, port) = route.rsplit_once(':').unwrap_or((route, "5269"));
            return Ok(vec![Target {
                host: host.trim_matches(['[', ']']).to_owned(),
                port: port.parse().unwrap_or(DEFAULT_PORT),
                direct_tls: false,
            }]);
        }
        let dns = self.dns().await?;
        let mut records = Vec::new();
        for (service, direct_tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
            match dns.srv_lookup(format!("{service}.{domain}.")).await {
                Ok(lookup) => records.extend(lookup.iter().map(|srv| {
                    let host = srv.target().to_utf8();
                    let host = host.trim_end_matches('.').to_owned();
                    (
                        srv.priority(),
                        std::cmp::Reverse(srv.weight()),
                        !direct_tls,
                        host,
                        srv.port(),
                    )
                })),
                Err(error) if error.is_no_records_found() || error.is_nx_domain() => {}
                Err(error) => tracing::debug!(%domain, service, %error, "SRV lookup failed"),
            }
        }
        if records.is_empty() {
            return Ok(vec![Target {
                host: domain.to_owned(),
                port: DEFAULT_PORT,
                direct_tls: false,
            }]);
        }
        // RFC 2782: a single record with target "." means no service.
        if records.iter().all(|record| record.3.is_empty()) {
            return Err(format!("{domain} says it offers no XMPP server service"));
        }
        records.sort();
        Ok(records
            .into_iter()
            .filter(|record| !record.3.is_empty())
            .map(|(_, _, starttls, host, port)| Target {
                host,
                port,
                direct_tls: !starttls,
            })
            .collect())
    }

    /// The socket addresses of a target (an address literal, or its A/AAAA).
    pub(crate) async fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let dns = self.dns().await?;
        let lookup = dns
            .lookup_ip(format!("{}.", target.host))
            .await
            .map_err(|error| format!("{}: {error}", target.host))?;
        Ok(lookup
            .iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect())
    }

    async fn dns(&self) -> Result<&TokioResolver, String> {
        let resolver = self
            .dns
            .get_or_init(|| async {
                TokioResolver::builder_tokio()
                    .map(|builder| builder.build())
                    .map_err(|error| format!("no DNS resolver configuration: {error}"))
            })
            .await;
        resolver.as_ref().map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_routes_win_over_dns() {
        let routes = BTreeMap::from([("Example.org".to_owned(), "10.0.0.5:5270".to_owned())]);
        let resolver = Resolver::new(routes);
        let targets = resolver.targets("example.org").await.unwrap();
        assert_eq!(
            targets,
            vec![Target {
                host: "10.0.0.5".into(),
                port: 5270,
                direct_tls: false
            }]
        );
        let addresses = resolver.addresses(&targets[0]).await.unwrap();
        assert_eq!(addresses, vec!["10.0.0.5:5270".parse().unwrap()]);
    }
}
