//! `starling cluster status`: the member table as any node's
//! `GET /api/cluster` reports it, printed for a terminal.
//!
//! The node is named by `--url` (default: the `[http] bind` of `--config`,
//! `https://` when its `[http] tls` is on, or http://127.0.0.1:5280); the
//! admin login comes from `--user` and `--password` (or
//! `STARLING_ADMIN_USER` / `STARLING_ADMIN_PASSWORD`) and goes as HTTP
//! Basic. Over HTTPS the node must present the certificate of `--cert`,
//! by default the one its config serves (see `pinned_tls`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use starling_core::cluster::{ClusterStatus, LinkSecurity, MemberRow, PeerState};
use starling_core::config::Config;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::pinned_tls;

/// Bound for connecting and for the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Base URL of any node's HTTP listener (default: `[http] bind` of
    /// --config, https when `[http] tls` is on, else http://127.0.0.1:5280).
    #[arg(long)]
    pub url: Option<String>,
    /// For an https:// URL: the PEM certificate the node must present
    /// (default: the `[tls]` certificate of --config).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// An admin account.
    #[arg(long, env = "STARLING_ADMIN_USER")]
    pub user: Option<String>,
    /// Its password.
    #[arg(long, env = "STARLING_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// What `/api/cluster` adds to the cluster module's status.
#[derive(Debug, Deserialize)]
struct ClusterView {
    #[serde(flatten)]
    status: ClusterStatus,
    quorum: bool,
    #[serde(default)]
    disagreement: Vec<String>,
    cluster_sessions: u64,
}

pub(super) async fn run(args: &StatusArgs, config: Option<&Config>) -> anyhow::Result<()> {
    let url = match (&args.url, config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => {
            let scheme = if config.http.tls { "https" } else { "http" };
            format!("{scheme}://{}", config.http.bind)
        }
        (None, None) => "http://127.0.0.1:5280".to_owned(),
    };
    let target = Target::parse(&url)?;
    let credentials = match (&args.user, &args.password) {
        (Some(user), Some(password)) => Some((user.as_str(), password.as_str())),
        (None, None) => None,
        _ => bail!("give both --user and --password (an admin account), or neither"),
    };
    let trusted = match target.scheme {
        Scheme::Http => None,
        Scheme::Https => Some(trusted_certificate(args, config, &url)?),
    };
    let path = format!("{}/api/cluster", target.path.trim_end_matches('/'));
    let (status, body) = tokio::time::timeout(
        TIMEOUT,
        fetch(&target, trusted.as_deref(), &path, credentials),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{url} did not answer within {TIMEOUT:?}"))?
    .with_context(|| format!("cannot reach {url}"))?;
    match status {
        200 => {}
        401 => bail!(
            "{url} refused the login (401): give an admin account with --user and --password \
             (accounts made with `starling user add NAME PASSWORD --admin`)"
        ),
        429 => bail!("{url}: too many failed logins from this address; try again later (429)"),
        other => bail!(
            "{url}{path} answered {other}: {}",
            String::from_utf8_lossy(&body).trim()
        ),
    }
    let view: ClusterView = serde_json::from_slice(&body)
        .with_context(|| format!("{url}{path} did not answer with a cluster status"))?;
    print!("{}", render(&view));
    Ok(())
}

/// The certificate an HTTPS node must present: `--cert`, else what the
/// node's config serves.
fn trusted_certificate(
    args: &StatusArgs,
    config: Option<&Config>,
    url: &str,
) -> anyhow::Result<PathBuf> {
    match (&args.cert, config) {
        (Some(cert), _) => Ok(cert.clone()),
        (None, Some(config)) => Ok(crate::tls::certificate_path(config)),
        (None, None) => bail!(
            "{url}: give --config of the node (its certificate is trusted) or --cert with the \
             PEM certificate it serves"
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// Where to ask: `http[s]://host:port/prefix`.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    scheme: Scheme,
    /// `host:port`, dialled and sent as `Host`.
    authority: &'a str,
    /// The path prefix the API lives under (usually empty).
    path: &'a str,
}

impl<'a> Target<'a> {
    fn parse(url: &'a str) -> anyhow::Result<Target<'a>> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            bail!("{url:?} is not an http:// or https:// URL");
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("{url:?} names no host");
        }
        Ok(Target {
            scheme,
            authority,
            path,
        })
    }

    /// The host part of the authority, for TLS: `[::1]:5280` gives `::1`.
    fn host(&self) -> &'a str {
        let host = match self.authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.authority,
        };
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// One GET, over TLS when the target is HTTPS: status and body.
async fn fetch(
    target: &Target<'_>,
    trusted: Option<&std::path::Path>,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<(u16, Bytes)> {
    let stream = TcpStream::connect(target.authority).await?;
    let Some(trusted) = trusted else {
        return get(stream, target.authority, path, credentials).await;
    };
    let connector = pinned_tls::connector(trusted)?;
    let name = ServerName::try_from(target.host().to_owned())
        .with_context(|| format!("{:?} is not a host name or address", target.host()))?;
    let stream = connector.connect(name, stream).await.map_err(|error| {
        let mismatch = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|error| matches!(error, rustls::Error::InvalidCertificate(_)));
        if mismatch {
            anyhow::anyhow!(
                "the node presented a certificate other than {} (renewed without a restart, \
                 or another node?)",
                trusted.display()
            )
        } else {
            anyhow::anyhow!("TLS handshake failed: {error}")
        }
    })?;
    get(stream, target.authority, path, credentials).await
}

/// One GET over a fresh HTTP/1.1 connection on `stream`: status and body.
async fn get<S>(
    stream: S,
    authority: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<(u16, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let mut request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json");
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header(hyper::header::AUTHORIZATION, format!("Basic {token}"));
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new())?)
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok((status, body))
}

fn state_name(state: PeerState) -> &'static str {
    match state {
        PeerState::Up => "up",
        PeerState::Suspect => "suspect",
        PeerState::Down => "down",
        PeerState::Leaving => "leaving",
    }
}

fn link(member: &MemberRow, this_node: u64) -> String {
    match &member.link {
        _ if member.id == this_node => "this node".to_owned(),
        Some(link) => format!(
            "queue {}, heard {} ms ago",
            link.queue_depth, link.heard_ms_ago
        ),
        None => "no link".to_owned(),
    }
}

/// The table and a summary, as printed.
fn render(view: &ClusterView) -> String {
    let status = &view.status;
    let header = [
        "NAME", "STATE", "ROLE", "SESSIONS", "MAX", "C2S", "HTTP", "INC", "LINK",
    ];
    let mut rows: Vec<[String; 9]> = vec![header.map(str::to_owned)];
    for member in &status.members {
        let mut role = Vec::new();
        if member.senior {
            role.push("senior");
        }
        if !member.member {
            role.push("not a member");
        }
        rows.push([
            member.name.clone(),
            state_name(member.state).to_owned(),
            if role.is_empty() {
                "-".to_owned()
            } else {
                role.join(",")
            },
            member.sessions.to_string(),
            match member.max_connections {
                0 => "-".to_owned(),
                max => max.to_string(),
            },
            member.c2s_addr.clone(),
            member.http_addr.clone(),
            member.incarnation.to_string(),
            link(member, status.this_node),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let up = status
        .members
        .iter()
        .filter(|member| member.member && member.state == PeerState::Up)
        .count();
    let members = status.members.iter().filter(|member| member.member).count();
    let senior = status
        .members
        .iter()
        .find(|member| member.senior)
        .map_or("none", |member| member.name.as_str());
    out.push_str(&format!(
        "\n{up} of {members} members up; senior {senior}; term {}; {} sessions in the cluster; \
         asked {} (protocol {})\n",
        status.term, view.cluster_sessions, status.this_name, status.protocol_version
    ));
    if status.link_security == Some(LinkSecurity::Plaintext) {
        out.push_str(
            "WARNING: cluster links are clear text ([cluster] insecure_plaintext = true)\n",
        );
    }
    if !view.quorum {
        out.push_str("WARNING: no senior member known (Raft quorum lost)\n");
    }
    if !view.disagreement.is_empty() {
        out.push_str(&format!(
            "WARNING: these members see the cluster otherwise: {}\n",
            view.disagreement.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_prefix() {
        let target = |url| Target::parse(url).unwrap();
        assert_eq!(
            target("http://127.0.0.1:5280"),
            Target {
                scheme: Scheme::Http,
                authority: "127.0.0.1:5280",
                path: ""
            }
        );
        assert_eq!(
            target("https://host:1/starling/"),
            Target {
                scheme: Scheme::Https,
                authority: "host:1",
                path: "/starling/"
            }
        );
        assert_eq!(target("https://host:1/").host(), "host");
        assert_eq!(target("https://[::1]:5280").host(), "::1");
        assert_eq!(target("https://example.org").host(), "example.org");
        assert!(Target::parse("host:5280").is_err());
        assert!(Target::parse("ftp://host").is_err());
        assert!(Target::parse("http:///x").is_err());
    }

    #[test]
    fn the_table_has_a_row_per_member_and_warns() {
        let json = serde_json::json!({
            "this_node": 1, "this_name": "node1", "leader": 1, "term": 4, "ready": true,
            "protocol_version": 3,
            "members": [
                {"id": 1, "name": "node1", "cluster_addr": "a:1", "c2s_addr": "a:5222",
                 "http_addr": "a:5280", "max_connections": 0, "incarnation": 7,
                 "joined_at_ms": 1, "member": true, "senior": true, "state": "up",
                 "sessions": 2, "link": null, "view_agrees": true},
                {"id": 2, "name": "node2", "cluster_addr": "b:1", "c2s_addr": "b:5222",
                 "http_addr": "b:5280", "max_connections": 5, "incarnation": 3,
                 "joined_at_ms": 1, "member": true, "senior": false, "state": "down",
                 "sessions": 0, "link": null, "view_agrees": true}
            ],
            "history": [], "remote_sessions": 0,
            "counters": {"forwarded": 0, "forward_failures": 0, "received": 0,
                         "deltas_sent": 0, "snapshots_sent": 0, "resyncs": 0,
                         "invalidations": 0, "invalidation_timeouts": 0},
            "local_sessions": 2, "cluster_sessions": 2, "quorum": false,
            "disagreement": ["node2"], "routing": {}
        });
        let view: ClusterView = serde_json::from_value(json).unwrap();
        let text = render(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(
            lines[1].starts_with("node1") && lines[1].contains("senior"),
            "{text}"
        );
        assert!(lines[1].contains("this node"), "{text}");
        assert!(
            lines[2].contains("down") && lines[2].contains("no link"),
            "{text}"
        );
        assert!(text.contains("1 of 2 members up; senior node1"), "{text}");
        assert!(
            text.contains("quorum lost") && text.contains("otherwise: node2"),
            "{text}"
        );
    }
}
