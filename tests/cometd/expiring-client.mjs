// A CometD client (long-polling, acks) on node argv[2] that subscribes to
// argv[3] after every handshake and prints what happens as JSON lines. The
// expiry test freezes and thaws this process.

import * as s from "./support.mjs";

const node = Number(process.argv[2]);
const channel = process.argv[3];
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

await s.cometd(node, {
    transport: "long-polling",
    onHandshake: (client) => {
        client.subscribe(channel, (message) => print({ event: "message", data: message.data }), (reply) => {
            if (reply.successful) {
                print({ event: "subscribed", clientId: client.getClientId() });
            } else {
                print({ event: "subscribe-failed", error: reply.error });
            }
        });
    },
});
process.on("SIGTERM", () => process.exit(0));
