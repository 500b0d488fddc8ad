//! Black-box tests of the web and mobile transports: XMPP over WebSocket
//! (RFC 7395), BOSH (XEP-0124/0206), direct TLS (XEP-0368) and XEP-0156
//! discovery, against real `starling` processes. Whatever the transport,
//! the other end of a conversation is usually a plain TCP client: the
//! transports must end in the same sessions.

mod support;

mod t10_websocket;
mod t20_websocket_bad_input;
mod t30_direct_tls;
mod t40_discovery;
mod t50_bosh;
mod t60_cluster;
mod t65_see_other_uri;
mod t70_clients;
mod t80_scram_plus;
mod t90_stream_management;
mod t95_chat_page;
