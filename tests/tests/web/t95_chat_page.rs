//! The `/chat` page: Converse.js, served by the node from its npm build,
//! in a real headless Chromium against a three-node cluster. alice logs in
//! on node 1 over WebSocket and bob on node 2 over BOSH; they see each
//! other online and chat; carol, on node 3 over plain TCP (our client),
//! talks to both. The browser side is tests/browser/chat.test.mjs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use starling_tests::interop::run_logged;
use starling_tests::tools::require_node_packages;
use starling_tests::{Client, TestCluster};

use crate::support::*;

const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn bare(client: &Client) -> String {
    client.jid().expect("bound").to_bare().to_string()
}

async fn presence_from(client: &mut Client, bare_jid: &str, ty: Option<&str>) {
    let prefix = format!("{bare_jid}/");
    client
        .expect(
            |e| {
                e.name() == "presence"
                    && e.attr("type") == ty
                    && e.attr("from")
                        .is_some_and(|from| from == bare_jid || from.starts_with(&prefix))
            },
            WAIT * 3,
        )
        .await
        .unwrap_or_else(|error| panic!("{} got no presence from {bare_jid}: {error}", jid(client)));
}

/// Mutual subscription between two online clients.
async fn befriend(a: &mut Client, b: &mut Client) {
    let (a_jid, b_jid) = (bare(a), bare(b));
    a.send(&format!("<presence to='{b_jid}' type='subscribe'/>"))
        .await
        .unwrap();
    presence_from(b, &a_jid, Some("subscribe")).await;
    b.send(&format!("<presence to='{a_jid}' type='subscribed'/>"))
        .await
        .unwrap();
    b.send(&format!("<presence to='{a_jid}' type='subscribe'/>"))
        .await
        .unwrap();
    presence_from(a, &b_jid, Some("subscribe")).await;
    a.send(&format!("<presence to='{b_jid}' type='subscribed'/>"))
        .await
        .unwrap();
    presence_from(a, &b_jid, None).await;
    presence_from(b, &a_jid, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js 20+, chromium, and `npm ci` in tests/browser and xmpp/web: run tests/run"]
async fn t95_converse_chat_across_the_cluster() {
    let chromium =
        std::env::var("STARLING_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install the Debian package chromium (tests/run does)"
    );
    let browser_dir = repo().join("tests/browser");
    require_node_packages(&browser_dir, &["playwright-core"]);
    let web = repo().join("xmpp/web");
    require_node_packages(&web, &["converse.js"]);
    let assets = web.join("node_modules/converse.js/dist");

    let cluster = TestCluster::builder(3)
        .set("http", "tls = true")
        .set("http", "chat_page = true")
        .set(
            "http",
            &format!("chat_assets = {:?}", assets.display().to_string()),
        )
        .user("alice", PASSWORD)
        .user("bob", PASSWORD)
        .user("carol", PASSWORD)
        .start();
    let (one, two, three) = (cluster.node(0), cluster.node(1), cluster.node(2));

    // Make them contacts over TCP first, as earlier sessions would have.
    {
        let mut alice = login_tcp(one, "alice", "setup").await;
        let mut bob = login_tcp(two, "bob", "setup").await;
        let mut carol = login_tcp(three, "carol", "setup").await;
        for client in [&mut alice, &mut bob, &mut carol] {
            let me = jid(client);
            client.send("<presence/>").await.unwrap();
            let own = me.clone();
            client
                .expect(
                    |e| e.name() == "presence" && e.attr("from") == Some(&own),
                    WAIT,
                )
                .await
                .unwrap();
        }
        befriend(&mut alice, &mut bob).await;
        befriend(&mut carol, &mut alice).await;
        befriend(&mut carol, &mut bob).await;
        for client in [alice, bob, carol] {
            client.close().await.unwrap();
        }
    }

    // Carol stays on TCP: once both browser users are online she greets
    // them and waits for their answers.
    let mut carol = login_tcp(three, "carol", "desk").await;
    carol.send("<presence/>").await.unwrap();
    let domain = one.domain.clone();
    let carol_side = tokio::spawn(async move {
        for user in ["alice", "bob"] {
            presence_from(&mut carol, &format!("{user}@{domain}"), None).await;
        }
        for user in ["alice", "bob"] {
            carol
                .send(&format!(
                    "<message to='{user}@{domain}' type='chat'><body>Hi {user}, carol here over TCP</body></message>"
                ))
                .await
                .unwrap();
        }
        for user in ["alice", "bob"] {
            let text = format!("Hi carol, {user} here");
            let message = carol
                .expect(|e| is_message_with_body(e, &text), SCRIPT_LIMIT)
                .await
                .unwrap_or_else(|error| panic!("carol did not hear {user}: {error}"));
            let from = message.attr("from").unwrap_or_default().to_owned();
            assert!(from.starts_with(&format!("{user}@{domain}/")), "{message}");
            // The browser waits for this before it closes, so its answer is
            // known to have left (a BOSH client sends on its next request).
            carol
                .send(&format!(
                    "<message to='{from}' type='chat'><body>Got it, {user}</body></message>"
                ))
                .await
                .unwrap();
        }
        carol
    });

    let shots = std::env::var_os("STARLING_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster.dir().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let mut command = Command::new("node");
    command
        .current_dir(&browser_dir)
        .args(["--test", "--test-reporter=spec", "chat.test.mjs"])
        .env("STARLING_CHAT_WS_URL", format!("https://{}/chat", one.http))
        .env(
            "STARLING_CHAT_BOSH_URL",
            format!("https://{}/chat?transport=bosh", two.http),
        )
        .env("STARLING_DOMAIN", &one.domain)
        .env("STARLING_PASSWORD", PASSWORD)
        .env("STARLING_SCREENSHOT_DIR", &shots)
        .env("STARLING_CHROMIUM", &chromium);
    let log = cluster.dir().join("chat-browser.log");
    let (status, output) =
        tokio::task::spawn_blocking(move || run_logged(command, &log, SCRIPT_LIMIT))
            .await
            .unwrap();
    match status {
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!(
            "the browser scenario failed ({status}); screenshots in {}:\n{output}",
            shots.display()
        ),
        None => panic!("the browser scenario was killed after {SCRIPT_LIMIT:?}:\n{output}"),
    }
    let carol = carol_side.await.expect("carol's side");
    drop(carol);
}

#[tokio::test]
async fn t96_chat_page_off_by_default_and_its_files_on() {
    use starling_tests::TestNode;
    use starling_tests::http::HttpRequest;

    let get = |addr, path: &str| HttpRequest::new(addr, "GET", path).tls().send();
    let off = https_node(&[]).start();
    assert_eq!(get(off.http, "/chat").await.unwrap().status, 404);

    // A stand-in for the Converse.js build: the node serves whatever the
    // folder holds, and nothing outside it.
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret.txt"), "not for the web").unwrap();
    let build = outer.path().join("dist");
    std::fs::create_dir_all(build.join("webfonts")).unwrap();
    std::fs::write(build.join("converse.min.js"), "// converse").unwrap();
    std::fs::write(build.join("converse.min.css"), "/* converse */").unwrap();
    std::fs::write(build.join("webfonts/icons.woff2"), "font").unwrap();
    let node = TestNode::builder()
        .set("http", "tls = true")
        .set("http", "chat_page = true")
        .set(
            "http",
            &format!("chat_assets = {:?}", build.display().to_string()),
        )
        .start();
    let page = get(node.http, "/chat").await.unwrap();
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("/chat/dist/converse.min.js"), "{html}");
    assert!(
        html.contains(&format!("data-domain=\"{}\"", node.domain)),
        "{html}"
    );
    let policy = page
        .header("content-security-policy")
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    // Scripts only from the node; WebAssembly (OMEMO) may compile, while
    // JavaScript's eval stays refused.
    let scripts: Vec<&str> = policy
        .split(';')
        .map(str::trim)
        .filter(|directive| directive.starts_with("script-src"))
        .collect();
    assert_eq!(
        scripts,
        ["script-src 'self' 'wasm-unsafe-eval'"],
        "scripts only from the node: {policy}"
    );

    let script = get(node.http, "/chat/start.js").await.unwrap();
    assert!(
        script.text().contains("/xmpp-websocket"),
        "{}",
        script.text()
    );
    assert!(script.text().contains("/http-bind"), "{}", script.text());
    let js = get(node.http, "/chat/dist/converse.min.js").await.unwrap();
    assert_eq!(js.status, 200);
    assert_eq!(js.text(), "// converse");
    assert!(
        js.header("content-type")
            .unwrap_or_default()
            .starts_with("text/javascript")
    );
    let font = get(node.http, "/chat/dist/webfonts/icons.woff2")
        .await
        .unwrap();
    assert_eq!(font.header("content-type"), Some("font/woff2"));
    for outside in [
        "/chat/dist/../secret.txt",
        "/chat/dist/%2e%2e/secret.txt",
        "/chat/dist/..%2fsecret.txt",
        "/chat/dist/missing.js",
    ] {
        let answer = get(node.http, outside).await.unwrap();
        assert_eq!(answer.status, 404, "{outside}: {}", answer.text());
    }
}
