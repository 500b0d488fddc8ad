// Shared by the Bayeux client tests: the cluster's endpoints (from the Rust
// test that started it), CometD and faye clients set up the same way, and
// bounded waits.

import { adapt } from "cometd-nodejs-client";
import { CometD } from "cometd";
import { AckExtension } from "cometd/AckExtension.js";
import WebSocket from "ws";

adapt();

/** `/cometd` URL of each node, node 1 first. */
export const urls = (process.env.STARLING_COMETD_URLS ?? "").split(",").filter(Boolean);
if (urls.length < 3) {
    throw new Error("STARLING_COMETD_URLS must list the /cometd URL of three nodes");
}
export const domain = process.env.STARLING_DOMAIN ?? "localhost";
/** Accounts the Rust test created; every password is the name followed by `-pw`. */
export const alice = { user: "alice", credentials: "alice-pw" };
export const bob = { user: "bob", credentials: "bob-pw" };

/** Bound for every wait: generous, a failing test reports what it waited for. */
export const LIMIT_MS = 20_000;

let counter = 0;
/** A channel (pub/sub node) no other test uses. */
export function freshChannel(name) {
    counter += 1;
    return `/pubsub/${name}-${process.pid}-${counter}`;
}

/** Resolves when `condition()` holds; rejects after LIMIT_MS naming `what`. */
export async function until(what, condition, limitMs = LIMIT_MS) {
    const deadline = Date.now() + limitMs;
    while (!condition()) {
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
}

/** Settles with the callback's reply, or rejects after LIMIT_MS. */
export function reply(what, start) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no reply to ${what}`)), LIMIT_MS);
        start((message) => {
            clearTimeout(timer);
            resolve(message);
        });
    });
}

/**
 * The official CometD client on node `node` (0-based), handshaken.
 * `transport`: "websocket" or "long-polling"; `auth`: an account or null;
 * `onHandshake(client)` runs after every successful handshake (the place to
 * subscribe, so subscriptions come back after a re-handshake).
 */
export async function cometd(node, { transport = "websocket", auth = null, ack = true, onHandshake } = {}) {
    const client = new CometD();
    client.configure({ url: urls[node], logLevel: "warn" });
    if (transport === "long-polling") {
        client.unregisterTransport("websocket");
    }
    client.unregisterTransport("callback-polling");
    if (ack) {
        client.registerExtension("ack", new AckExtension());
    }
    client.handshakes = [];
    client.addListener("/meta/handshake", (message) => {
        client.handshakes.push(message);
        if (message.successful && onHandshake) {
            onHandshake(client, message);
        }
    });
    const props = auth ? { ext: { authentication: auth } } : {};
    const answer = await reply("handshake", (done) => client.handshake(props, done));
    if (!answer.successful) {
        client.disconnect();
        const error = new Error(`handshake refused: ${answer.error}`);
        error.reply = answer;
        throw error;
    }
    if (client.getTransport().type !== transport) {
        throw new Error(`expected transport ${transport}, got ${client.getTransport().type}`);
    }
    return client;
}

/** Subscribes; resolves with the subscribe reply (successful or not). */
export function subscribe(client, channel, onMessage) {
    return reply(`subscribe ${channel}`, (done) => client.subscribe(channel, onMessage, done));
}

export function publish(client, channel, data) {
    return reply(`publish on ${channel}`, (done) => client.publish(channel, data, done));
}

export function disconnect(client) {
    return reply("disconnect", (done) => client.disconnect(done));
}

/** One raw long-poll POST: status and parsed (or raw) body. */
export async function post(node, body, path = "") {
    const response = await fetch(urls[node] + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(LIMIT_MS),
    });
    const text = await response.text();
    let json = null;
    try {
        json = JSON.parse(text);
    } catch {
        json = null;
    }
    return { status: response.status, text, json };
}

/** A raw handshake; returns the clientId. */
export async function rawHandshake(node, ext = undefined) {
    const { json } = await post(node, [{
        channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["long-polling"], id: "h", ext,
    }]);
    if (!json?.[0]?.successful) {
        throw new Error(`raw handshake failed: ${JSON.stringify(json)}`);
    }
    return json[0].clientId;
}

/** A raw WebSocket to node `node`: `send(messages)` and `next()` for the next frame's batch. */
export async function rawSocket(node) {
    const socket = new WebSocket(urls[node].replace(/^http/, "ws"));
    const frames = [];
    const waiting = [];
    socket.on("message", (data) => {
        const batch = JSON.parse(data.toString());
        const waiter = waiting.shift();
        if (waiter) {
            waiter(batch);
        } else {
            frames.push(batch);
        }
    });
    await new Promise((resolve, reject) => {
        socket.once("open", resolve);
        socket.once("error", reject);
    });
    return {
        send: (payload) => socket.send(typeof payload === "string" ? payload : JSON.stringify(payload)),
        next: () => frames.length > 0
            ? Promise.resolve(frames.shift())
            : new Promise((resolve, reject) => {
                const timer = setTimeout(() => reject(new Error("no frame")), LIMIT_MS);
                waiting.push((batch) => {
                    clearTimeout(timer);
                    resolve(batch);
                });
            }),
        close: () => socket.close(),
    };
}
