//! slixmpp's XEP-0198 plugin (filled in below).
