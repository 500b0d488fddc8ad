// Memory of idle Bayeux clients on one node: the server's resident set
// before and after N clients of each kind, per client.
//
//   node memory.mjs URL PID [N]
//
// URL: the node's /cometd; PID: its process (RSS from /proc). Kinds: the
// client state alone (handshake + subscribe, no connection), a long-poll
// client holding a connect, and a WebSocket client holding a connect. Run
// the node with a long [cometd] timeout_ms and max_interval_ms so nothing
// expires or returns while measuring.

import { readFileSync } from "node:fs";
import http from "node:http";
import WebSocket from "ws";

const [url, pid, countArg] = process.argv.slice(2);
const count = Number(countArg ?? 2000);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
const settle = () => new Promise((resolve) => setTimeout(resolve, 1500));

function post(messages) {
    return new Promise((resolve, reject) => {
        const request = http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } }, (response) => {
            let body = "";
            response.on("data", (chunk) => { body += chunk; });
            response.on("end", () => resolve(JSON.parse(body)));
        });
        request.on("error", reject);
        request.end(JSON.stringify(messages));
    });
}

async function handshakeAndSubscribe(channel) {
    const [handshake] = await post([{ channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["long-polling"], ext: { ack: true } }]);
    const clientId = handshake.clientId;
    const [subscribed] = await post([{ channel: "/meta/subscribe", clientId, subscription: channel }]);
    if (!subscribed.successful) {
        throw new Error(JSON.stringify(subscribed));
    }
    return clientId;
}

async function inBatches(total, make) {
    const made = [];
    for (let start = 0; start < total; start += 100) {
        const batch = [];
        for (let i = start; i < Math.min(total, start + 100); i += 1) {
            batch.push(make(i));
        }
        made.push(...await Promise.all(batch));
    }
    return made;
}

function report(kind, before, after) {
    const per = (after - before) / count;
    console.log(`${kind.padEnd(34)} ${count} clients: RSS +${((after - before) / 1048576).toFixed(1)} MiB, ${Math.round(per)} bytes per client`);
}

// Warm-up: the first clients pay for one-time allocations (channel tables, pools).
await inBatches(50, (i) => handshakeAndSubscribe(`/pubsub/memory-${i % 10}`));
await settle();

let before = rss();
const ids = await inBatches(count, (i) => handshakeAndSubscribe(`/pubsub/memory-${i % 10}`));
await settle();
let after = rss();
report("state (handshake + subscribe)", before, after);

before = rss();
// Each held connect keeps its own HTTP connection open.
const held = ids.map((clientId) => new Promise((resolve) => {
    const request = http.request(url, { method: "POST", agent: false, headers: { "content-type": "application/json" } }, resolve);
    request.on("error", () => resolve());
    request.end(JSON.stringify([{ channel: "/meta/connect", clientId, connectionType: "long-polling" }]));
}));
await settle();
await settle();
after = rss();
report("+ long-poll connect held", before, after);

before = rss();
const sockets = await inBatches(count, (i) => new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^http/, "ws"));
    socket.on("error", reject);
    let step = 0;
    socket.on("message", (data) => {
        const [reply] = JSON.parse(data.toString());
        step += 1;
        if (step === 1) {
            socket.send(JSON.stringify([{ channel: "/meta/subscribe", clientId: reply.clientId, subscription: `/pubsub/memory-${i % 10}` }]));
            socket.clientId = reply.clientId;
        } else if (step === 2) {
            socket.send(JSON.stringify([{ channel: "/meta/connect", clientId: socket.clientId, connectionType: "websocket" }]));
            resolve(socket);
        }
    });
    socket.on("open", () => socket.send(JSON.stringify([{ channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["websocket"], ext: { ack: true } }])));
}));
await settle();
await settle();
after = rss();
report("WebSocket client (state + socket)", before, after);

for (const socket of sockets) {
    socket.terminate();
}
agent.destroy();
process.exit(0);
