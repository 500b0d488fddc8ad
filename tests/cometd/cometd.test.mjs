// The official CometD JavaScript client (cometd + cometd-nodejs-client)
// against a three-node Starling cluster. Run by tests/tests/cometd.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import * as s from "./support.mjs";

const nodeOf = (channel) => channel.slice("/pubsub/".length);

for (const transport of ["websocket", "long-polling"]) {
    test(`${transport}: a publish on node 3 reaches subscribers on nodes 1 and 2`, async () => {
        const channel = s.freshChannel(`cross-${transport}`);
        const first = [];
        const second = [];
        // The node does not exist yet: the channel is implicit.
        const one = await s.cometd(0, { transport });
        const two = await s.cometd(1, { transport, auth: s.bob });
        assert.ok((await s.subscribe(one, channel, (m) => first.push(m))).successful);
        assert.ok((await s.subscribe(two, channel, (m) => second.push(m))).successful);
        const publisher = await s.cometd(2, { transport, auth: s.alice });
        const published = await s.publish(publisher, channel, { text: "hello <world> & co", n: 1 });
        assert.ok(published.successful, JSON.stringify(published));
        await s.until("the event on node 1", () => first.length === 1);
        await s.until("the event on node 2", () => second.length === 1);
        for (const message of [first[0], second[0]]) {
            assert.equal(message.channel, channel);
            assert.deepEqual(message.data, { text: "hello <world> & co", n: 1 });
            assert.equal(message.ext.xmpp.node, nodeOf(channel));
            assert.equal(message.ext.xmpp.publisher, `alice@${s.domain}`);
            assert.equal(typeof message.ext.xmpp.id, "string");
        }
        assert.equal(first[0].ext.xmpp.id, second[0].ext.xmpp.id);
        assert.equal(first[0].ext.xmpp.id, published.ext.pubsub.id);
        for (const client of [one, two, publisher]) {
            assert.ok((await s.disconnect(client)).successful);
        }
    });
}

test("what a client publishes comes back unchanged: to itself, and to subscribers on the other nodes", async () => {
    const channel = s.freshChannel("contract");
    // Nested objects and arrays, unicode, escapes, numbers of every kind, and
    // keys out of alphabetical order: all of it must survive the trip.
    const data = {
        zebra: "first key",
        apple: { nested: { deeper: [1, [2, [3, { four: 4 }]], [], {}] }, empty: "" },
        text: "héllo wörld — 日本語 🐦 \u2028 \"quoted\" <tag> & amp; \\ tab\t newline\n \u0001",
        numbers: [0, -1, 3.14159, 1e21, 2.5e-8, Number.MAX_SAFE_INTEGER, -0.5, 12345678.9],
        literals: [true, false, null],
    };
    const list = [1, "two", { three: 3.5 }];
    const sent = [data, list];

    const own = [];
    const remote = [];
    const publisher = await s.cometd(0, { transport: "websocket", auth: s.alice });
    assert.ok((await s.subscribe(publisher, channel, (m) => own.push(m))).successful);
    const subscriber = await s.cometd(1, { transport: "long-polling" });
    assert.ok((await s.subscribe(subscriber, channel, (m) => remote.push(m))).successful);
    // A third subscriber reads the raw HTTP answers of node 3: the bytes on the wire.
    const clientId = await s.rawHandshake(2);
    const subscribed = await s.post(2, [{ channel: "/meta/subscribe", clientId, subscription: channel, id: "s" }]);
    assert.ok(subscribed.json[0].successful, subscribed.text);
    const connect = (n) => s.post(2, [{ channel: "/meta/connect", clientId, connectionType: "long-polling", id: `c${n}` }], "/connect");
    // Held until events come; always one outstanding, so this client never
    // stays quiet long enough to expire.
    let pending = connect(0);

    for (const item of sent) {
        assert.ok((await s.publish(publisher, channel, item)).successful);
    }
    let wire = "";
    let events = [];
    for (let n = 1; events.length < 2; n += 1) {
        assert.ok(n < 20, `node 3 delivered ${events.length} of 2 events: ${wire}`);
        const answer = await pending;
        wire += answer.text;
        events = events.concat(answer.json.filter((m) => m.channel === channel));
        pending = events.length < 2 ? connect(n) : null;
    }
    assert.deepStrictEqual(events.map((m) => m.data), sent);
    for (const item of sent) {
        assert.ok(wire.includes(`"data":${JSON.stringify(item)}`), `node 3 sent ${JSON.stringify(item)} as other bytes: ${wire}`);
    }

    await s.until("the publisher's own two events", () => own.length === 2);
    await s.until("node 2's two events", () => remote.length === 2);
    for (const [index, item] of sent.entries()) {
        for (const [who, received] of [["publisher", own], ["node 2", remote]]) {
            assert.equal(JSON.stringify(received[index].data), JSON.stringify(item), `${who}, item ${index}`);
            assert.deepStrictEqual(received[index].data, item, `${who}, item ${index}`);
            assert.equal(received[index].ext.xmpp.publisher, `alice@${s.domain}`);
        }
    }
    await s.post(2, [{ channel: "/meta/disconnect", clientId }]);
    await s.disconnect(subscriber);
    await s.disconnect(publisher);
});

test("a 200-message burst arrives complete and in order over long-polling with acks", async () => {
    const channel = s.freshChannel("burst");
    const received = [];
    const subscriber = await s.cometd(1, { transport: "long-polling" });
    assert.ok((await s.subscribe(subscriber, channel, (m) => received.push(m.data.n))).successful);
    const publisher = await s.cometd(0, { transport: "websocket", auth: s.alice });
    const replies = [];
    for (let n = 0; n < 200; n += 1) {
        replies.push(s.publish(publisher, channel, { n }));
    }
    for (const published of await Promise.all(replies)) {
        assert.ok(published.successful, JSON.stringify(published));
    }
    await s.until(`200 events (have ${received.length})`, () => received.length >= 200);
    assert.deepEqual(received, Array.from({ length: 200 }, (_, n) => n));
    await s.disconnect(subscriber);
    await s.disconnect(publisher);
});

test("after unsubscribing a client gets nothing more from that channel", async () => {
    const channel = s.freshChannel("unsub");
    const marker = s.freshChannel("marker");
    const leaving = [];
    const markers = [];
    const staying = [];
    const client = await s.cometd(0, { transport: "long-polling", auth: s.alice });
    const witness = await s.cometd(0, { transport: "websocket" });
    let handle;
    const subscribed = await s.reply("subscribe", (done) => {
        handle = client.subscribe(channel, (m) => leaving.push(m), done);
    });
    assert.ok(subscribed.successful);
    assert.ok((await s.subscribe(client, marker, (m) => markers.push(m))).successful);
    assert.ok((await s.subscribe(witness, channel, (m) => staying.push(m))).successful);
    const gone = await s.reply("unsubscribe", (done) => client.unsubscribe(handle, done));
    assert.ok(gone.successful, JSON.stringify(gone));
    const publisher = await s.cometd(1, { auth: s.bob });
    assert.ok((await s.publish(publisher, channel, { after: "unsubscribe" })).successful);
    // The witness on the same node got it, so it went through this node's
    // queues; a marker queued after it reaches the client only after it would have.
    await s.until("the witness's event", () => staying.length === 1);
    assert.ok((await s.publish(client, marker, { marker: true })).successful);
    await s.until("the marker", () => markers.length === 1);
    assert.deepEqual(leaving, []);
    for (const c of [client, witness, publisher]) {
        await s.disconnect(c);
    }
});

test("ack extension: the events of a long-poll reply that was lost come again", async () => {
    const channel = s.freshChannel("ack");
    const clientId = await s.rawHandshake(1, { ack: true });
    const subscribed = await s.post(1, [{ channel: "/meta/subscribe", clientId, subscription: channel, id: "s" }]);
    assert.ok(subscribed.json[0].successful, subscribed.text);
    const connect = (ack, timeout) => s.post(1, [{
        channel: "/meta/connect", clientId, connectionType: "long-polling", id: "c", ext: { ack },
        ...(timeout === undefined ? {} : { advice: { timeout } }),
    }], "/connect");
    const reply = (answer) => answer.json.find((m) => m.channel === "/meta/connect");
    const events = (answer) => answer.json.filter((m) => m.channel === channel).map((m) => m.data);
    const first = reply(await connect(0, 0));
    assert.ok(first.successful);
    const publisher = await s.cometd(0, { auth: s.alice });
    for (const n of [1, 2, 3]) {
        assert.ok((await s.publish(publisher, channel, { n })).successful);
    }
    // Held connects until all three are here, acknowledging each reply.
    let batch = first.ext.ack;
    let got = [];
    let lastBatch = batch;
    while (got.length < 3) {
        const answer = await connect(batch);
        assert.ok(reply(answer).successful, answer.text);
        got = got.concat(events(answer));
        lastBatch = batch;
        batch = reply(answer).ext.ack;
    }
    assert.deepEqual(got.slice(-1), [{ n: 3 }]);
    // The last reply "never arrived": the client acknowledges the batch before it.
    const again = await connect(lastBatch, 0);
    assert.ok(events(again).length > 0, `nothing sent again: ${again.text}`);
    assert.deepEqual(events(again).at(-1), { n: 3 });
    // Acknowledged now: nothing comes a third time.
    const done = await connect(reply(again).ext.ack, 0);
    assert.deepEqual(events(done), []);
    await s.disconnect(publisher);
});

test("a disconnected client id is unknown afterwards", async () => {
    const client = await s.cometd(1, { transport: "long-polling" });
    const clientId = client.getClientId();
    assert.match(clientId, /^[0-9a-f]{32}$/);
    assert.ok((await s.disconnect(client)).successful);
    const { status, json } = await s.post(1, [{
        channel: "/meta/connect", clientId, connectionType: "long-polling", id: "c1",
    }], "/connect");
    assert.equal(status, 200);
    assert.equal(json[0].successful, false);
    assert.equal(json[0].error, "402::Unknown client");
    assert.equal(json[0].advice.reconnect, "handshake");
    assert.equal(json[0].id, "c1");
});

test("a client that stops connecting expires, then re-handshakes and gets events again", async () => {
    const channel = s.freshChannel("expiry");
    const child = spawn(process.execPath, ["expiring-client.mjs", "1", channel], {
        cwd: fileURLToPath(new URL(".", import.meta.url)),
        env: process.env,
        stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = [];
    createInterface({ input: child.stdout }).on("line", (line) => lines.push(JSON.parse(line)));
    try {
        await s.until("the child's first subscription", () => lines.some((l) => l.event === "subscribed"));
        const firstId = lines.find((l) => l.event === "subscribed").clientId;
        // Frozen, as a laptop lid closing: the server stops hearing from it.
        child.kill("SIGSTOP");
        const probe = () => s.post(1, [{ channel: "/meta/subscribe", clientId: firstId, subscription: "/service/probe" }]);
        let expired = false;
        const deadline = Date.now() + s.LIMIT_MS;
        while (!expired && Date.now() < deadline) {
            const { json } = await probe();
            expired = json[0].error === "402::Unknown client";
            if (!expired) {
                await new Promise((resolve) => setTimeout(resolve, 200));
            }
        }
        assert.ok(expired, "the server never expired the frozen client");
        child.kill("SIGCONT");
        await s.until("a second subscription under a new client id", () =>
            lines.filter((l) => l.event === "subscribed").length >= 2);
        const secondId = lines.filter((l) => l.event === "subscribed")[1].clientId;
        assert.notEqual(secondId, firstId);
        const publisher = await s.cometd(2, { auth: s.alice });
        assert.ok((await s.publish(publisher, channel, { after: "expiry" })).successful);
        await s.until("the event in the recovered client", () => lines.some((l) => l.event === "message"));
        assert.deepEqual(lines.find((l) => l.event === "message").data, { after: "expiry" });
        await s.disconnect(publisher);
    } finally {
        child.kill("SIGCONT");
        child.kill("SIGTERM");
    }
});

test("malformed input gets an error reply, never a hang", async () => {
    let answer = await s.post(0, "{not json");
    assert.equal(answer.status, 400);
    assert.equal(answer.json[0].successful, false);
    assert.match(answer.json[0].error, /^400::malformed JSON/);

    answer = await s.post(0, "42");
    assert.equal(answer.status, 400);

    answer = await s.post(0, [{ id: "x", data: 1 }, { channel: 5, id: "y" }, { channel: "no-slash", id: "z" }]);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json.map((m) => [m.id, m.successful]), [["x", false], ["y", false], ["z", false]]);
    assert.equal(answer.json[0].error, "400::message has no channel");

    answer = await s.post(0, [{ channel: "/meta/connect", clientId: "0".repeat(32), id: "c" }]);
    assert.equal(answer.json[0].error, "402::Unknown client");
    assert.equal(answer.json[0].advice.reconnect, "handshake");

    const socket = await s.rawSocket(2);
    socket.send("{not json");
    let frame = await socket.next();
    assert.match(frame[0].error, /^400::malformed JSON/);
    socket.send([{ id: "w" }]);
    frame = await socket.next();
    assert.deepEqual([frame[0].id, frame[0].successful, frame[0].error], ["w", false, "400::message has no channel"]);
    // The socket is still usable.
    socket.send([{ channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["websocket"], id: "h" }]);
    frame = await socket.next();
    assert.equal(frame[0].successful, true);
    assert.match(frame[0].clientId, /^[0-9a-f]{32}$/);
    socket.close();
});

test("credentials: a wrong password is refused, anonymous clients may not publish", async () => {
    await assert.rejects(
        s.cometd(0, { transport: "long-polling", auth: { user: "alice", credentials: "wrong" } }),
        (error) => error.reply?.error === "403::Authentication failed",
    );
    const anonymous = await s.cometd(0, { transport: "long-polling" });
    const published = await s.publish(anonymous, s.freshChannel("anon"), { x: 1 });
    assert.equal(published.successful, false);
    assert.match(published.error, /^403:/);
    await s.disconnect(anonymous);
    const user = await s.cometd(0, { transport: "websocket", auth: { user: `alice@${s.domain}`, credentials: "alice-pw" } });
    assert.ok((await s.publish(user, s.freshChannel("user"), { x: 1 })).successful);
    await s.disconnect(user);
});
