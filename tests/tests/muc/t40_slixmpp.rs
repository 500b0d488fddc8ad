//! slixmpp as an independent MUC client.
