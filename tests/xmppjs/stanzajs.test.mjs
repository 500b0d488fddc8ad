// StanzaJS against a Starling node over XMPP over WebSocket (RFC 7395): two
// users log in, see each other's presence after subscribing, and chat.
//
// Run by tests/tests/web (t72_stanzajs) with:
//   STARLING_WS_URL      wss://127.0.0.1:PORT/xmpp-websocket
//   STARLING_DOMAIN      the node's domain
//   STARLING_PASSWORD    the password of alice and bob
// The node's certificate is self-signed: NODE_TLS_REJECT_UNAUTHORIZED=0.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as XMPP from "stanza";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};

// Resolves with the client once its session started; rejects on auth failure.
function start(username, resource) {
  const client = XMPP.createClient({
    jid: `${username}@${env("STARLING_DOMAIN")}`,
    password: env("STARLING_PASSWORD"),
    resource,
    transports: { websocket: env("STARLING_WS_URL"), bosh: false },
  });
  // StanzaJS picks a -PLUS mechanism whenever one is offered, then aborts
  // for want of a tls-unique binding, which it never has over WebSocket: a
  // StanzaJS app must turn them off for any server offering -PLUS there.
  client.sasl.disable("SCRAM-SHA-256-PLUS");
  client.sasl.disable("SCRAM-SHA-1-PLUS");
  return new Promise((resolve, reject) => {
    client.once("session:started", () => resolve(client));
    client.once("auth:failed", () => reject(new Error(`${username}: authentication failed`)));
    client.connect();
  });
}

// Resolves with the first event `name` whose payload passes `wanted`.
function next(client, name, wanted) {
  return new Promise((resolve) => {
    const listener = (payload) => {
      if (wanted(payload)) {
        client.off(name, listener);
        resolve(payload);
      }
    };
    client.on(name, listener);
  });
}

test("StanzaJS users over WebSocket subscribe, see presence and chat", async () => {
  const alice = await start("alice", "stanzajs-a");
  const bob = await start("bob", "stanzajs-b");
  const domain = env("STARLING_DOMAIN");
  assert.equal(alice.jid, `alice@${domain}/stanzajs-a`);
  assert.equal(bob.jid, `bob@${domain}/stanzajs-b`);
  await alice.getRoster();
  await bob.getRoster();

  // Bob approves alice's request; alice then sees bob available.
  bob.on("subscribe", (presence) => bob.acceptSubscription(presence.from));
  const bobOnline = next(alice, "available", (p) => p.from === bob.jid);
  alice.subscribe(`bob@${domain}`);
  bob.sendPresence();
  alice.sendPresence();
  await bobOnline;

  const toBob = next(bob, "chat", (m) => m.body === "hello from StanzaJS");
  alice.sendMessage({ to: bob.jid, type: "chat", body: "hello from StanzaJS" });
  const received = await toBob;
  assert.equal(received.from, alice.jid);

  const toAlice = next(alice, "chat", (m) => m.body === "and back");
  bob.sendMessage({ to: alice.jid, type: "chat", body: "and back" });
  assert.equal((await toAlice).from, bob.jid);

  // A full session: the server answers a ping.
  await alice.ping(domain);

  alice.disconnect();
  bob.disconnect();
});
