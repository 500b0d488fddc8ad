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

// Rejects after `seconds` naming the step that did not finish, so that a
// hang says where it hung (the Rust side kills the run after 120 s).
function within(promise, step, seconds = 30) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${step}: nothing after ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

// Resolves with the client once its session started; rejects on auth
// failure or when the connection ends first.
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
    client.once("stream:error", (error) =>
      reject(new Error(`${username}: stream error ${JSON.stringify(error)}`)),
    );
    client.once("disconnected", () => reject(new Error(`${username}: disconnected before the session started`)));
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
  const alice = await within(start("alice", "stanzajs-a"), "alice's login");
  const bob = await within(start("bob", "stanzajs-b"), "bob's login");
  const domain = env("STARLING_DOMAIN");
  assert.equal(alice.jid, `alice@${domain}/stanzajs-a`);
  assert.equal(bob.jid, `bob@${domain}/stanzajs-b`);
  await within(alice.getRoster(), "alice's roster");
  await within(bob.getRoster(), "bob's roster");

  // Bob approves alice's request; alice then sees bob available.
  bob.on("subscribe", (presence) => bob.acceptSubscription(presence.from));
  const bobOnline = next(alice, "available", (p) => p.from === bob.jid);
  alice.subscribe(`bob@${domain}`);
  bob.sendPresence();
  alice.sendPresence();
  await within(bobOnline, "bob's presence reaching alice after the subscription");

  const toBob = next(bob, "chat", (m) => m.body === "hello from StanzaJS");
  alice.sendMessage({ to: bob.jid, type: "chat", body: "hello from StanzaJS" });
  const received = await within(toBob, "alice's message reaching bob");
  assert.equal(received.from, alice.jid);

  const toAlice = next(alice, "chat", (m) => m.body === "and back");
  bob.sendMessage({ to: alice.jid, type: "chat", body: "and back" });
  assert.equal((await within(toAlice, "bob's message reaching alice")).from, bob.jid);

  // A full session: the server answers a ping.
  await within(alice.ping(domain), "the ping");

  alice.disconnect();
  bob.disconnect();
});
