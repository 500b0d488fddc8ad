//! `/metrics` in the Prometheus text format (version 0.0.4): every line
//! is a comment or a sample, every sample belongs to a declared family,
//! and the families the operators rely on are there with live values.

use std::collections::{BTreeMap, BTreeSet};

use starling_tests::http::HttpRequest;

use crate::support::*;

/// One sample: family (the name without a histogram suffix), labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format strictly enough to catch a malformed line.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match parts.next() {
                Some("TYPE") => {
                    let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    let kind = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{}",
                        at()
                    );
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "declared twice: {}",
                        at()
                    );
                }
                Some("HELP") => assert!(parts.next().is_some(), "{}", at()),
                _ => {}
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or_else(|_| panic!("{}", at())),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{}", at()));
                let mut labels = BTreeMap::new();
                for pair in split_labels(inner) {
                    let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{}", at()));
                    let value = quoted
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("{}", at()));
                    labels.insert(key.to_owned(), value.to_owned());
                }
                (name, labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{}",
            at()
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no TYPE before {}", at());
        samples.push(Sample {
            name: family.to_owned(),
            labels,
            value,
        });
    }
    (types, samples)
}

/// `a="x",b="y,z"` into its pairs (commas inside quotes kept).
fn split_labels(inner: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&inner[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        pairs.push(&inner[start..]);
    }
    pairs
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
        })
        .map(|sample| sample.value)
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_every_family() {
    let cluster = builder(&["gina", "hank"]).start();
    let (n1, n2) = (cluster.node(0), cluster.node(1));
    let mut gina = online(n1, "gina", PW, "r").await;
    let _hank = online(n2, "hank", PW, "r").await;
    wait_json(n1.http, "/api/sessions", "2 sessions", WAIT, |list| {
        list["cluster_count"] == 2
    })
    .await;
    gina.send("<message to='hank@localhost' type='chat'><body>hi</body></message>")
        .await
        .unwrap();
    sync(&mut gina).await;

    // No login needed.
    let response = HttpRequest::new(n1.http, "GET", "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.header("content-type")
    );
    let (types, samples) = parse(&response.text());

    let families = [
        ("starling_connections_open", "gauge"),
        ("starling_connections_accepted_total", "counter"),
        ("starling_sessions", "gauge"),
        ("starling_logins_total", "counter"),
        ("starling_auth_failures_total", "counter"),
        ("starling_stanzas_in_total", "counter"),
        ("starling_stanzas_out_total", "counter"),
        ("starling_routing_tasks_total", "counter"),
        ("starling_routing_lookup_retries_total", "counter"),
        ("starling_routing_lookup_misses_total", "counter"),
        ("starling_directory_entries", "gauge"),
        ("starling_cache_entries", "gauge"),
        ("starling_cache_hits_total", "counter"),
        ("starling_cache_misses_total", "counter"),
        ("starling_cache_evictions_total", "counter"),
        ("starling_cluster_peer_up", "gauge"),
        ("starling_cluster_peer_queue_depth", "gauge"),
        ("starling_cluster_ready", "gauge"),
        ("starling_cluster_quorum", "gauge"),
        ("starling_storage_seconds", "histogram"),
    ];
    let missing: Vec<_> = families
        .iter()
        .filter(|(name, kind)| types.get(*name).map(String::as_str) != Some(*kind))
        .collect();
    assert!(missing.is_empty(), "missing or mistyped: {missing:?}");
    let sampled: BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    for (name, _) in families {
        assert!(sampled.contains(name), "no sample of {name}");
    }

    assert_eq!(
        value(&samples, "starling_sessions", &[("scope", "local")]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "starling_sessions", &[("scope", "cluster")]),
        Some(2.0)
    );
    assert!(value(&samples, "starling_logins_total", &[]).unwrap() >= 1.0);
    assert!(
        value(
            &samples,
            "starling_stanzas_in_total",
            &[("kind", "message")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &samples,
            "starling_routing_tasks_total",
            &[("target", "remote")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(value(&samples, "starling_cluster_ready", &[]), Some(1.0));
    assert_eq!(value(&samples, "starling_cluster_quorum", &[]), Some(1.0));
    for peer in ["node2", "node3"] {
        assert_eq!(
            value(&samples, "starling_cluster_peer_up", &[("peer", peer)]),
            Some(1.0),
            "link to {peer}"
        );
    }
    assert!(
        value(&samples, "starling_storage_seconds", &[("op", "get_user")]).is_some(),
        "storage latency by operation"
    );

    // The same families in OpenMetrics when the scraper asks for it.
    let open = HttpRequest::new(n1.http, "GET", "/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(open.status, 200);
    assert!(
        open.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text; version=1.0.0")),
        "{:?}",
        open.header("content-type")
    );
    let open_types = openmetrics_types(&open.text());
    let expected: BTreeMap<String, String> = types
        .iter()
        .map(|(name, kind)| match kind.as_str() {
            // OpenMetrics names a counter family without `_total`; its
            // samples keep it.
            "counter" => (
                name.strip_suffix("_total").unwrap().to_owned(),
                kind.clone(),
            ),
            _ => (name.clone(), kind.clone()),
        })
        .collect();
    assert_eq!(open_types, expected);
    assert!(
        open.text()
            .lines()
            .any(|line| line.starts_with("starling_logins_total ")),
        "counter samples end in _total"
    );
}

/// The `# TYPE` lines of an OpenMetrics exposition, which must end in
/// `# EOF` and have nothing after it.
fn openmetrics_types(text: &str) -> BTreeMap<String, String> {
    assert!(text.ends_with("\n# EOF\n"), "no # EOF at the end: {text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn metrics_can_move_to_their_own_address() {
    let port = starling_tests::free_port();
    let node = starling_tests::TestNode::builder()
        .set("http", &format!("metrics_bind = \"127.0.0.1:{port}\""))
        .start();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(node.http).await;
    wait_listening(addr).await;
    let main = HttpRequest::new(node.http, "GET", "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(main.status, 404, "not on the main listener");
    let own = HttpRequest::new(addr, "GET", "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status, 200);
    parse(&own.text());
}

/// `[http] tls = true`: the same routes over HTTPS with the `[tls]`
/// certificate, cookies marked Secure, plain HTTP refused.
#[tokio::test]
async fn the_listener_serves_https_when_asked() {
    let node = starling_tests::TestNode::builder()
        .set("http", "tls = true")
        .admin(ADMIN, ADMIN_PW)
        .start();
    wait_listening(node.http).await;
    let form = HttpRequest::new(node.http, "GET", "/admin/login")
        .tls()
        .send()
        .await
        .unwrap();
    assert_eq!(form.status, 200);
    let cookie = form.header("set-cookie").unwrap_or_default();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let api = HttpRequest::new(node.http, "GET", "/api/session")
        .tls()
        .basic(ADMIN, ADMIN_PW)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.json()["user"], ADMIN);
    let plain = HttpRequest::new(node.http, "GET", "/admin/login")
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |answer| answer.status >= 400),
        "plain HTTP on a TLS listener: {plain:?}"
    );
}
