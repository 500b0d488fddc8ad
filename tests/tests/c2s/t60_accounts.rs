//! Accounts: XEP-0077 in-band registration (off by default), XEP-0078
//! legacy authentication, and the `starling user` commands (provision,
//! del) seen from a client.

use starling_core::xml::{Element, ns};
use starling_tests::{Client, Mechanism, TestNode, TlsMode};

use crate::support::{
    Item, TEST_ITERATIONS, WAIT, assert_error, assert_none, assert_result, available, barrier,
    expect_presence, iq, is_message_with_body, is_presence, login, online, options, roster_get,
    sasl_condition, sync,
};

fn register(fields: &str) -> String {
    format!("<query xmlns='jabber:iq:register'>{fields}</query>")
}

fn has_field(reply: &Element, namespace: &str, name: &str) -> bool {
    reply
        .child("query", namespace)
        .is_some_and(|query| query.has_child(name, namespace))
}

/// A TLS stream, not authenticated.
async fn unauthenticated(node: &TestNode) -> Client {
    let mut client = Client::connect(node.c2s, &node.domain).await.unwrap();
    client.starttls().await.unwrap();
    client
}

#[tokio::test]
async fn in_band_registration_is_off_by_default() {
    let node = TestNode::builder().start();
    let mut client = unauthenticated(&node).await;
    assert!(
        !client
            .features()
            .has_child("register", ns::REGISTER_FEATURE),
        "{}",
        client.features()
    );
    let form = iq(&mut client, "get", None, &register("")).await;
    assert_error(&form, "cancel", "service-unavailable");
    let set = iq(
        &mut client,
        "set",
        None,
        &register("<username>eve</username><password>pw</password>"),
    )
    .await;
    assert_error(&set, "cancel", "service-unavailable");
    let result = client
        .authenticate("eve", "pw", Some(Mechanism::Plain))
        .await;
    assert!(
        result.is_err(),
        "the refused registration created an account"
    );
}

#[tokio::test]
async fn in_band_registration_password_change_and_removal() {
    let node = TestNode::builder()
        .user("taken", "pw")
        .set("c2s", "registration = true")
        .start();
    let mut client = unauthenticated(&node).await;
    assert!(
        client
            .features()
            .has_child("register", ns::REGISTER_FEATURE),
        "{}",
        client.features()
    );
    let form = iq(&mut client, "get", None, &register("")).await;
    assert_result(&form);
    assert!(has_field(&form, ns::REGISTER, "username"), "{form}");
    assert!(has_field(&form, ns::REGISTER, "password"), "{form}");
    assert!(!has_field(&form, ns::REGISTER, "registered"), "{form}");

    let created = iq(
        &mut client,
        "set",
        None,
        &register("<username>newbie</username><password>first</password>"),
    )
    .await;
    assert_result(&created);
    let taken = iq(
        &mut client,
        "set",
        None,
        &register("<username>taken</username><password>x</password>"),
    )
    .await;
    assert_error(&taken, "cancel", "conflict");
    let incomplete = iq(
        &mut client,
        "set",
        None,
        &register("<username>other</username>"),
    )
    .await;
    assert_error(&incomplete, "modify", "not-acceptable");

    // The new account logs in, on this stream and on a new one.
    client
        .authenticate("newbie", "first", Some(Mechanism::ScramSha256))
        .await
        .unwrap();
    client.bind(Some("here")).await.unwrap();
    let mut newbie = login(&node, "newbie", "first", "main").await;
    let info = iq(
        &mut newbie,
        "get",
        Some("localhost"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert!(
        info.child("query", ns::DISCO_INFO)
            .is_some_and(|q| q.children().any(|f| f.attr("var") == Some(ns::REGISTER))),
        "registration enabled but not advertised: {info}"
    );

    // Logged in: the form says registered; the password can change.
    let form = iq(&mut newbie, "get", None, &register("")).await;
    assert_result(&form);
    assert!(has_field(&form, ns::REGISTER, "registered"), "{form}");
    let changed = iq(
        &mut newbie,
        "set",
        None,
        &register("<username>newbie</username><password>second</password>"),
    )
    .await;
    assert_result(&changed);
    let old = Client::login(node.c2s, &options(&node, "newbie", "first", "old")).await;
    assert_eq!(sasl_condition(old), "not-authorized");
    login(&node, "newbie", "second", "new").await;

    // Removal: a result, then every session of the account is closed.
    let removed = iq(&mut newbie, "set", None, &register("<remove/>")).await;
    assert_result(&removed);
    newbie
        .expect_stream_error("not-authorized", WAIT)
        .await
        .unwrap();
    client
        .expect_stream_error("not-authorized", WAIT)
        .await
        .unwrap();
    let gone = Client::login(node.c2s, &options(&node, "newbie", "second", "x")).await;
    assert_eq!(sasl_condition(gone), "not-authorized");
    // The name is free again.
    let mut again = unauthenticated(&node).await;
    let created = iq(
        &mut again,
        "set",
        None,
        &register("<username>newbie</username><password>third</password>"),
    )
    .await;
    assert_result(&created);
}

#[tokio::test]
async fn legacy_authentication() {
    let node = TestNode::builder()
        .user("alice", "secret")
        .user("bob", "pw")
        .plain_without_tls()
        .start();
    let mut client = Client::connect(node.c2s, "localhost").await.unwrap();
    assert!(
        client.features().has_child("auth", ns::AUTH_FEATURE),
        "{}",
        client.features()
    );
    // XEP-0078 3: ask for the fields, then send them.
    let fields = iq(
        &mut client,
        "get",
        None,
        "<query xmlns='jabber:iq:auth'><username>alice</username></query>",
    )
    .await;
    assert_result(&fields);
    for name in ["username", "password", "resource"] {
        assert!(has_field(&fields, ns::AUTH, name), "no {name}: {fields}");
    }
    let wrong = iq(
        &mut client,
        "set",
        None,
        "<query xmlns='jabber:iq:auth'><username>alice</username>\
         <password>wrong</password><resource>legacy</resource></query>",
    )
    .await;
    assert_error(&wrong, "auth", "not-authorized");
    let ok = iq(
        &mut client,
        "set",
        None,
        "<query xmlns='jabber:iq:auth'><username>alice</username>\
         <password>secret</password><resource>legacy</resource></query>",
    )
    .await;
    assert_result(&ok);

    // The session is bound as alice@localhost/legacy.
    let pong = iq(&mut client, "get", None, "<ping xmlns='urn:xmpp:ping'/>").await;
    assert_result(&pong);
    assert_eq!(pong.attr("to"), Some("alice@localhost/legacy"));
    let mut options = options(&node, "bob", "pw", "b");
    options.tls = TlsMode::Off;
    options.mechanism = Some(Mechanism::Plain);
    let mut bob = Client::login(node.c2s, &options).await.unwrap();
    bob.send("<message to='alice@localhost/legacy'><body>hello legacy</body></message>")
        .await
        .unwrap();
    let message = client
        .expect(|e| is_message_with_body(e, "hello legacy"), WAIT)
        .await
        .unwrap();
    assert_eq!(message.attr("from"), Some("bob@localhost/b"));
}

#[tokio::test]
async fn provisioned_users_log_in_with_full_rosters_and_presence_flows() {
    let node = TestNode::builder().start();
    // The load-test command, with fewer PBKDF2 iterations for the debug build.
    let output = node.cli(&[
        "user",
        "provision",
        "--prefix",
        "p",
        "--count",
        "1000",
        "--password",
        "w",
        "--roster-size",
        "30",
        "--iterations",
        TEST_ITERATIONS,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("1000 users and 30000 roster items"),
        "{report}"
    );

    let mut p1 = login(&node, "p1", "w1", "r").await;
    let roster = roster_get(&mut p1).await;
    assert_eq!(roster.len(), 30, "{roster:?}");
    let mut expected: Vec<Item> = (2..=16)
        .chain(986..=1000)
        .map(|n| Item::new(&format!("p{n}@localhost"), "both"))
        .collect();
    expected.sort_by(|a, b| a.jid.cmp(&b.jid));
    assert_eq!(roster, expected);
    available(&mut p1, "<presence/>").await;

    // A contact coming online: its presence reaches p1, p1's reaches it.
    let mut p2 = online(&node, "p2", "w2", "r").await;
    expect_presence(&mut p1, "p2@localhost/r", None).await;
    expect_presence(&mut p2, "p1@localhost/r", None).await;
    // The neighbour on the other side of the wrap-around too.
    let mut p1000 = online(&node, "p1000", "w1000", "r").await;
    expect_presence(&mut p1, "p1000@localhost/r", None).await;
    expect_presence(&mut p1000, "p1@localhost/r", None).await;
    // Not a contact of p1: hears nothing from it.
    let mut p500 = online(&node, "p500", "w500", "r").await;
    available(&mut p1, "<presence><show>chat</show></presence>").await;
    expect_presence(&mut p2, "p1@localhost/r", None).await;
    barrier(&mut p1, &mut p500).await;
    assert_none(&p500, "presence from a non-contact", |e| {
        is_presence(e, "p1@localhost/r", None)
    });
    sync(&mut p2).await;
}

#[tokio::test]
async fn user_del_removes_an_account() {
    let node = TestNode::builder()
        .user("alice", "secret")
        .user("bob", "pw")
        .start();
    let alice = login(&node, "alice", "secret", "a").await;
    alice.close().await.unwrap();

    let output = node.cli(&["user", "del", "alice"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = Client::login(node.c2s, &options(&node, "alice", "secret", "a")).await;
    assert_eq!(sasl_condition(result), "not-authorized");
    let mut plain = options(&node, "alice", "secret", "a");
    plain.mechanism = Some(Mechanism::Plain);
    assert_eq!(
        sasl_condition(Client::login(node.c2s, &plain).await),
        "not-authorized"
    );
    // Deleting it again is an error; other accounts are untouched.
    let again = node.cli(&["user", "del", "alice"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("alice"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let mut bob = login(&node, "bob", "pw", "b").await;
    sync(&mut bob).await;
}

fn cli_ok(node: &TestNode, args: &[&str]) -> String {
    let output = node.cli(args);
    assert!(
        output.status.success(),
        "starling {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn export_then_import_into_a_fresh_store_keeps_logins_rosters_and_offline_messages() {
    let old = TestNode::builder().start();
    cli_ok(
        &old,
        &[
            "user",
            "provision",
            "--prefix",
            "m",
            "--count",
            "5",
            "--password",
            "pw",
            "--roster-size",
            "2",
            "--iterations",
            TEST_ITERATIONS,
        ],
    );
    // m3 is offline: a message to it waits in the old store.
    let mut m1 = online(&old, "m1", "pw1", "r").await;
    m1.send("<message to='m3@localhost' type='chat'><body>kept across the move</body></message>")
        .await
        .unwrap();
    sync(&mut m1).await;

    let file = old.dir().join("export.xml");
    let file = file.to_str().unwrap();
    let report = cli_ok(&old, &["user", "export", file]);
    assert!(
        report.contains("exported 5 users, 10 roster items and 1 offline messages"),
        "{report}"
    );
    let exported = std::fs::read_to_string(file).unwrap();
    assert!(exported.contains("urn:xmpp:pie:0#scram"), "{exported}");
    assert!(!exported.contains("password="), "no passwords in an export");

    let new = TestNode::builder().start();
    let report = cli_ok(&new, &["user", "import", file]);
    assert!(
        report.contains("imported 5 users, 10 roster items and 1 offline messages"),
        "{report}"
    );
    // The same passwords work, by SCRAM and by PLAIN, and rosters are intact.
    let mut m2 = login(&new, "m2", "pw2", "r").await;
    let roster = roster_get(&mut m2).await;
    assert_eq!(
        roster,
        vec![
            Item::new("m1@localhost", "both"),
            Item::new("m3@localhost", "both")
        ]
    );
    let mut plain = options(&new, "m5", "pw5", "r");
    plain.mechanism = Some(Mechanism::Plain);
    Client::login(new.c2s, &plain).await.expect("PLAIN login");
    assert!(
        login_fails(&new, "m5", "wrong").await,
        "a wrong password is refused"
    );
    // The offline message moved with its recipient.
    let mut m3 = login(&new, "m3", "pw3", "r").await;
    m3.send("<presence/>").await.unwrap();
    m3.expect(|e| is_message_with_body(e, "kept across the move"), WAIT)
        .await
        .expect("the imported offline message");

    // A second import finds the names taken and changes nothing.
    let output = new.cli(&["user", "import", file]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("already exists"), "{error}");
}

async fn login_fails(node: &TestNode, user: &str, password: &str) -> bool {
    Client::login(node.c2s, &options(node, user, password, "r"))
        .await
        .is_err()
}

#[tokio::test]
async fn imported_clear_passwords_are_hashed_not_stored() {
    let node = TestNode::builder().start();
    let password = "unmistakable-Passw0rd-7731";
    let file = node.dir().join("accounts.xml");
    std::fs::write(
        &file,
        format!(
            "<?xml version='1.0'?>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>\
             <user name='zoe' password='{password}'><query xmlns='jabber:iq:roster'>\
             <item jid='yan@localhost' subscription='to' name='Yan'><group>Team</group></item>\
             </query></user><user name='yan' password='other'/></host></server-data>"
        ),
    )
    .unwrap();
    cli_ok(&node, &["user", "import", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();

    let mut zoe = login(&node, "zoe", password, "r").await;
    let mut expected = Item::new("yan@localhost", "to");
    expected.name = Some("Yan".into());
    expected.groups = vec!["Team".into()];
    assert_eq!(roster_get(&mut zoe).await, vec![expected]);
    for entry in walk(node.dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "{} holds the clear password",
            entry.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Other servers write XEP-0082 stamps with a UTC offset and fractions;
/// one such stamp used to abort the whole import.
#[tokio::test]
async fn import_reads_delay_stamps_with_utc_offsets() {
    let node = TestNode::builder().start();
    let file = node.dir().join("offsets.xml");
    let message = |body: &str, stamp: &str| {
        format!(
            "<message xmlns='jabber:client' from='bo@localhost/r' to='ann@localhost' type='chat'>\
             <body>{body}</body><delay xmlns='urn:xmpp:delay' stamp='{stamp}'/></message>"
        )
    };
    std::fs::write(
        &file,
        format!(
            "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>\
             <user name='ann' password='ann-pw'><offline-messages>{}{}</offline-messages></user>\
             <user name='bo' password='bo-pw'/></host></server-data>",
            message("from Paris", "2026-11-22T10:15:00.5+02:00"),
            message("from Delhi", "2026-11-22T13:45:00+05:30"),
        ),
    )
    .unwrap();
    let report = cli_ok(&node, &["user", "import", file.to_str().unwrap()]);
    assert!(
        report.contains("imported 2 users, 0 roster items and 2 offline messages"),
        "{report}"
    );

    let mut ann = login(&node, "ann", "ann-pw", "r").await;
    ann.send("<presence/>").await.unwrap();
    for (body, utc) in [
        ("from Paris", "2026-11-22T08:15:00.500Z"),
        ("from Delhi", "2026-11-22T08:15:00.000Z"),
    ] {
        let delivered = ann
            .expect(|e| is_message_with_body(e, body), WAIT)
            .await
            .unwrap_or_else(|error| panic!("the imported message {body:?}: {error}"));
        let stamp = delivered
            .child("delay", "urn:xmpp:delay")
            .and_then(|delay| delay.attr("stamp"));
        assert_eq!(stamp, Some(utc), "{body}: {delivered:?}");
    }
}

#[tokio::test]
async fn import_refuses_a_file_for_another_domain() {
    let node = TestNode::builder().start();
    let file = node.dir().join("other.xml");
    std::fs::write(
        &file,
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'>\
         <user name='a' password='b'/></host></server-data>",
    )
    .unwrap();
    let output = node.cli(&["user", "import", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("example.org") && error.contains("this server serves localhost"),
        "{error}"
    );
    let list = cli_ok(&node, &["user", "list"]);
    assert!(list.contains("0 of 0 accounts"), "{list}");
}
