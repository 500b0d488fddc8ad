// Starts Converse.js against the node that served this page: its WebSocket
// endpoint, or BOSH with ?transport=bosh (for networks that block WebSocket).
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const domain = document.body.dataset.domain;
  const bosh = new URLSearchParams(window.location.search).get("transport") === "bosh";
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const endpoint = bosh
    ? { bosh_service_url: `${window.location.origin}/http-bind` }
    : { websocket_url: `${scheme}//${window.location.host}/xmpp-websocket` };
  converse.initialize({
    ...endpoint,
    assets_path: "/chat/dist/",
    view_mode: "fullscreen",
    default_domain: domain,
    discover_connection_methods: false,
    allow_registration: false,
    auto_reconnect: true,
    i18n: "en",
    loglevel: "warn",
    play_sounds: false,
  });
});
