//! Login and a first chat message.

use starling_tests::TestNode;

use crate::support::{WAIT, is_message_with_body, login};

#[tokio::test]
async fn two_users_log_in_and_chat() {
    let node = TestNode::builder()
        .user("alice", "secret-a")
        .user("bob", "secret-b")
        .start();
    let mut alice = login(&node, "alice", "secret-a", "home").await;
    let mut bob = login(&node, "bob", "secret-b", "phone").await;
    assert!(alice.is_tls() && bob.is_tls());
    bob.send("<presence/>").await.unwrap();
    alice
        .send("<message to='bob@localhost/phone' type='chat'><body>hello</body></message>")
        .await
        .unwrap();
    let message = bob
        .expect(|e| is_message_with_body(e, "hello"), WAIT)
        .await
        .unwrap();
    assert_eq!(message.attr("from"), Some("alice@localhost/home"));
}
