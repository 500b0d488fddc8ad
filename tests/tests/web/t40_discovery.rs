//! XEP-0156 host-meta (XRD and JSON) naming both endpoints, and the
//! `Origin` policy of `[http] allowed_origins` on WebSocket upgrades.

use starling_tests::http::HttpRequest;
use starling_tests::websocket::{self, WsError, WsOptions};

use crate::support::*;

#[tokio::test]
async fn t40_host_meta_names_websocket_and_bosh() {
    let node = https_node(&[]).start();
    let base = format!("{}", node.http);
    let json = HttpRequest::new(node.http, "GET", "/.well-known/host-meta.json")
        .tls()
        .send()
        .await
        .unwrap();
    assert_eq!(json.status, 200, "{}", json.text());
    assert_eq!(json.header("access-control-allow-origin"), Some("*"));
    let links = json.json()["links"].clone();
    let href = |rel: &str| {
        links
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["rel"] == rel)
            .and_then(|link| link["href"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        href("urn:xmpp:alt-connections:websocket"),
        Some(format!("wss://{base}/xmpp-websocket")),
        "{links}"
    );
    assert_eq!(
        href("urn:xmpp:alt-connections:xbosh"),
        Some(format!("https://{base}/http-bind")),
        "{links}"
    );
    let xrd = HttpRequest::new(node.http, "GET", "/.well-known/host-meta")
        .tls()
        .send()
        .await
        .unwrap();
    assert_eq!(xrd.status, 200);
    assert!(
        xrd.header("content-type")
            .is_some_and(|t| t.starts_with("application/xrd+xml")),
        "{:?}",
        xrd.headers
    );
    let text = xrd.text();
    assert!(
        text.contains("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "<Link rel='urn:xmpp:alt-connections:websocket' href='wss://{base}/xmpp-websocket'/>"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "<Link rel='urn:xmpp:alt-connections:xbosh' href='https://{base}/http-bind'/>"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn t41_public_url_in_host_meta() {
    let node = https_node(&[])
        .set("http", "public_url = \"https://xmpp.example.com\"")
        .start();
    let json = HttpRequest::new(node.http, "GET", "/.well-known/host-meta.json")
        .tls()
        .send()
        .await
        .unwrap();
    let text = json.text();
    assert!(
        text.contains("wss://xmpp.example.com/xmpp-websocket"),
        "{text}"
    );
    assert!(
        text.contains("https://xmpp.example.com/http-bind"),
        "{text}"
    );
}

fn with_origin(origin: &str) -> WsOptions {
    WsOptions {
        origin: Some(origin.to_owned()),
        ..wss()
    }
}

async fn refused_origin(node: &starling_tests::TestNode, origin: &str) {
    match websocket::connect(node.http, &with_origin(origin)).await {
        Err(WsError::Refused { status, body }) => {
            assert_eq!(status, 403, "{origin}: {body}");
            assert!(body.contains("allowed_origins"), "{body}");
        }
        other => panic!("{origin}: expected a 403, got {other:?}"),
    }
}

#[tokio::test]
async fn t42_websocket_origins_same_origin_by_default() {
    let node = https_node(&[]).start();
    let same = format!("https://{}", node.http);
    websocket::connect(node.http, &with_origin(&same))
        .await
        .expect("the node's own pages may connect");
    refused_origin(&node, "https://evil.example").await;
    // Not a browser: no Origin, no check.
    websocket::connect(node.http, &wss())
        .await
        .expect("clients without Origin connect");
}

#[tokio::test]
async fn t43_websocket_origins_from_the_config() {
    let node = https_node(&[])
        .set("http", "allowed_origins = [\"https://web.example\"]")
        .start();
    websocket::connect(node.http, &with_origin("https://web.example"))
        .await
        .expect("a listed origin connects");
    refused_origin(&node, "https://evil.example").await;
    let any = https_node(&[])
        .set("http", "allowed_origins = [\"*\"]")
        .start();
    websocket::connect(any.http, &with_origin("https://evil.example"))
        .await
        .expect("\"*\" lets any origin connect");
}
