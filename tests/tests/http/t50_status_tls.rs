//! `starling cluster status` against a node serving HTTPS (`[http] tls =
//! true`): the real binary, trusting the certificate the node's config
//! serves and nothing else.

use std::process::Output;

use starling_tests::{TestNode, starling_binary};

use crate::support::{ADMIN, ADMIN_PW};

/// A certificate no node of these tests serves.
const FOREIGN_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUYlTMepM98ul3UKSrzM3T3AlTRt8wCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPYW5vdGhlci5leGFtcGxlMCAXDTI2MTIwNTE3MjQzNVoYDzIx
MjYxMTExMTcyNDM1WjAaMRgwFgYDVQQDDA9hbm90aGVyLmV4YW1wbGUwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARdjV8aNyFGR5Fpn9N5Q68Y2jPT+qtBGEv/zIi9
p1G3xsyz6Ufk7VPkp/QJ2smiXuJ9DLA1UymZ3BxBpGtQOEH0o1MwUTAdBgNVHQ4E
FgQU1dE1Pz/UI8KiaysXCEqdfGvMUlMwHwYDVR0jBBgwFoAU1dE1Pz/UI8KiaysX
CEqdfGvMUlMwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAX8qRs
KaeVVsc77kOTO1LVm5pcrZIwDEys0S96tz71ewIhAIj1QyAPnYHNOlVkW/B2abJu
wnIN5iei3uuRWueSgILQ
-----END CERTIFICATE-----
";

fn status(node: &TestNode, extra: &[&str]) -> Output {
    let mut args = vec!["cluster", "status", "--user", ADMIN, "--password", ADMIN_PW];
    args.extend_from_slice(extra);
    node.cli(&args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn status_speaks_https_to_a_node_with_http_tls() {
    let node = TestNode::builder()
        .admin(ADMIN, ADMIN_PW)
        .set("http", "tls = true")
        .start();

    // --config alone: https:// from [http] tls, the generated certificate trusted.
    let output = status(&node, &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "status: {}", stderr(&output));
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("members up"), "{text}");

    // The same certificate named explicitly, and an explicit URL.
    let cert = node.dir().join("data/tls/cert.pem");
    let url = format!("https://{}", node.http);
    let output = status(
        &node,
        &[
            "--url",
            &url,
            "--cert",
            cert.to_str().expect("a UTF-8 path"),
        ],
    );
    assert!(
        output.status.success(),
        "status --cert: {}",
        stderr(&output)
    );

    // Another certificate: the node is not trusted, and the error says why.
    let foreign = node.dir().join("foreign.pem");
    std::fs::write(&foreign, FOREIGN_CERT).expect("writing a certificate");
    let output = status(&node, &["--cert", foreign.to_str().expect("a UTF-8 path")]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("certificate other than") && error.contains("foreign.pem"),
        "{error}"
    );

    // Over TLS, a wrong password is still a 401.
    let output = node.cli(&["cluster", "status", "--user", ADMIN, "--password", "wrong"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("401"), "{}", stderr(&output));

    // Plain HTTP to the TLS listener fails to reach it rather than hanging.
    let output = status(&node, &["--url", &format!("http://{}", node.http)]);
    assert!(!output.status.success());

    // Without a config there is no certificate to trust: say what to give.
    let output = std::process::Command::new(starling_binary())
        .args(["cluster", "status", "--url", &url])
        .output()
        .expect("running starling");
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("--cert"), "{error}");
}
