// xmpp.js (@xmpp/client) against a Starling node: one user over XMPP over
// WebSocket (RFC 7395), one over direct TLS (XEP-0368), chatting both ways.
//
// Run by tests/tests/web (t70_xmppjs) with:
//   STARLING_WS_URL      wss://127.0.0.1:PORT/xmpp-websocket
//   STARLING_XMPPS_URL   xmpps://127.0.0.1:PORT
//   STARLING_DOMAIN      the node's domain
//   STARLING_PASSWORD    the password of alice and bob
// The node's certificate is self-signed: NODE_TLS_REJECT_UNAUTHORIZED=0.

import { test } from "node:test";
import assert from "node:assert/strict";
import { client, xml } from "@xmpp/client";
import { WebSocket } from "ws";

// Node.js 20 has no global WebSocket; xmpp.js uses the global one.
globalThis.WebSocket ??= WebSocket;

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};

function connect(service, username, resource) {
  const xmpp = client({
    service,
    domain: env("STARLING_DOMAIN"),
    username,
    password: env("STARLING_PASSWORD"),
    resource,
  });
  xmpp.reconnect.stop();
  return xmpp;
}

// Resolves with the first message whose body is `text`.
function nextMessage(xmpp, text) {
  return new Promise((resolve) => {
    const listener = (stanza) => {
      if (stanza.is("message") && stanza.getChildText("body") === text) {
        xmpp.removeListener("stanza", listener);
        resolve(stanza);
      }
    };
    xmpp.on("stanza", listener);
  });
}

test("WebSocket and direct TLS users chat both ways", async () => {
  const alice = connect(env("STARLING_WS_URL"), "alice", "xmppjs-ws");
  const bob = connect(env("STARLING_XMPPS_URL"), "bob", "xmppjs-tls");
  const aliceJid = await alice.start();
  const bobJid = await bob.start();
  assert.equal(aliceJid.toString(), `alice@${env("STARLING_DOMAIN")}/xmppjs-ws`);
  assert.equal(bobJid.toString(), `bob@${env("STARLING_DOMAIN")}/xmppjs-tls`);

  await alice.send(xml("presence"));
  await bob.send(xml("presence"));

  const toBob = nextMessage(bob, "over the WebSocket");
  await alice.send(
    xml("message", { to: bobJid.toString(), type: "chat" }, xml("body", {}, "over the WebSocket")),
  );
  const received = await toBob;
  assert.equal(received.attrs.from, aliceJid.toString());

  const toAlice = nextMessage(alice, "over direct TLS");
  await bob.send(
    xml("message", { to: aliceJid.toString(), type: "chat" }, xml("body", {}, "over direct TLS")),
  );
  const answer = await toAlice;
  assert.equal(answer.attrs.from, bobJid.toString());

  // A full session: the server answers a ping (an error would reject).
  await alice.iqCaller.get(xml("ping", "urn:xmpp:ping"));

  await alice.stop();
  await bob.stop();
});
