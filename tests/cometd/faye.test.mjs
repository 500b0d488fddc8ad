// faye, a Bayeux client written independently of CometD, against the same
// three-node cluster. Run by tests/tests/cometd.

import { test } from "node:test";
import assert from "node:assert/strict";
import faye from "faye";

import * as s from "./support.mjs";

faye.logger = null;

/**
 * A faye client on node `node` (0-based), connected over `transport`. Boxed:
 * a faye client is a thenable, which an async function would unwrap.
 */
async function connected(node, transport, auth = null) {
    const client = new faye.Client(s.urls[node], { timeout: 30 });
    if (transport === "long-polling") {
        client.disable("websocket");
    }
    if (auth) {
        client.addExtension({
            outgoing(message, callback) {
                if (message.channel === "/meta/handshake") {
                    message.ext = { ...message.ext, authentication: auth };
                }
                callback(message);
            },
        });
    }
    // faye hands subscribers the data only: keep whole messages to see ext.
    client.messages = [];
    client.addExtension({
        incoming(message, callback) {
            if (!message.channel.startsWith("/meta/")) {
                client.messages.push(message);
            }
            callback(message);
        },
    });
    client.connect();
    await s.until("faye's handshake", () => client._state === 3 /* CONNECTED */);
    await s.until(`faye's ${transport} transport`, () => client._dispatcher.connectionType === transport);
    return { client };
}

/** A subscription (boxed, a thenable too), once the server confirmed it. */
async function subscribe(client, channel, onMessage) {
    const subscription = client.subscribe(channel, onMessage);
    await subscription;
    return { subscription };
}

for (const transport of ["websocket", "long-polling"]) {
    test(`faye over ${transport}: publish on node 1, subscriber on node 2`, async () => {
        const channel = s.freshChannel(`faye-${transport}`);
        const received = [];
        const subscriber = (await connected(1, transport)).client;
        await subscribe(subscriber, channel, (data) => received.push(data));
        const publisher = (await connected(0, transport, s.bob)).client;
        await publisher.publish(channel, { from: "faye", transport });
        await s.until("faye's event on node 2", () => received.length === 1);
        assert.deepEqual(received[0], { from: "faye", transport });
        const [message] = subscriber.messages;
        assert.equal(message.ext.xmpp.node, channel.slice("/pubsub/".length));
        assert.equal(message.ext.xmpp.publisher, `bob@${s.domain}`);
        await subscriber.disconnect();
        await publisher.disconnect();
    });
}

test("faye over websocket receives a 200-message burst from the official client in order", async () => {
    const channel = s.freshChannel("faye-burst");
    const received = [];
    const subscriber = (await connected(2, "websocket")).client;
    await subscribe(subscriber, channel, (data) => received.push(data.n));
    const publisher = await s.cometd(0, { transport: "long-polling", auth: s.alice });
    const replies = [];
    for (let n = 0; n < 200; n += 1) {
        replies.push(s.publish(publisher, channel, { n }));
    }
    for (const published of await Promise.all(replies)) {
        assert.ok(published.successful, JSON.stringify(published));
    }
    await s.until(`200 events (have ${received.length})`, () => received.length >= 200);
    assert.deepEqual(received, Array.from({ length: 200 }, (_, n) => n));
    await subscriber.disconnect();
    await s.disconnect(publisher);
});

test("faye unsubscribes, and comes back by itself when its client id is unknown", async () => {
    const channel = s.freshChannel("faye-unsub");
    const marker = s.freshChannel("faye-marker");
    const leaving = [];
    const markers = [];
    const staying = [];
    const unsubscribed = [];
    const subscriber = (await connected(0, "long-polling", s.alice)).client;
    subscriber.addExtension({
        incoming(message, callback) {
            if (message.channel === "/meta/unsubscribe") {
                unsubscribed.push(message);
            }
            callback(message);
        },
    });
    const witness = (await connected(0, "websocket")).client;
    const { subscription } = await subscribe(subscriber, channel, (data) => leaving.push(data));
    await subscribe(subscriber, marker, (data) => markers.push(data));
    await subscribe(witness, channel, (data) => staying.push(data));
    subscription.cancel();
    await s.until("the unsubscribe reply", () => unsubscribed.length === 1);
    assert.equal(unsubscribed[0].successful, true);
    const publisher = (await connected(1, "websocket", s.bob)).client;
    await publisher.publish(channel, { after: "unsubscribe" });
    // The witness on the same node got it, so it went through node 1's
    // queues; a marker queued after it reaches the subscriber only after it would have.
    await s.until("the witness's event", () => staying.length === 1);
    await subscriber.publish(marker, { marker: 1 });
    await s.until("the marker", () => markers.length === 1);
    assert.deepEqual(leaving, []);

    // The server forgets the client (as after maxInterval): faye must
    // handshake again and resubscribe on its own.
    const lost = subscriber._dispatcher.clientId;
    const forged = "f".repeat(32);
    subscriber._dispatcher.clientId = forged;
    await s.until("a new client id", () => {
        const id = subscriber._dispatcher.clientId;
        return id !== forged && id !== lost && subscriber._state === 3;
    });
    // Its resubscription is not observable from outside: publish until one arrives.
    for (let n = 2; markers.length < 2 && n < 40; n += 1) {
        await subscriber.publish(marker, { marker: n });
        await s.until("a marker after the re-handshake", () => markers.length >= 2, 500).catch(() => {});
    }
    assert.ok(markers[1].marker >= 2, JSON.stringify(markers));
    const marked = subscriber.messages.filter((m) => m.channel === marker);
    assert.equal(marked.at(-1).ext.xmpp.publisher, `alice@${s.domain}`);
    assert.notEqual(subscriber._dispatcher.clientId, lost);
    for (const c of [subscriber, witness, publisher]) {
        await c.disconnect();
    }
});
