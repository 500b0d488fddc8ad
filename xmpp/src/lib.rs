//! starling-xmpp
