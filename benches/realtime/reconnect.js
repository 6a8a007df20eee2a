#!/usr/bin/env node
// A SignalR stateful reconnect under a message stream, measured with the official client.
//
//   node benches/realtime/reconnect.js URL BUYER_JWT SELLER_JWT [protocol] [drop_ms] [rate]
//
// The buyer's client (@microsoft/signalr with withStatefulReconnect(), from
// tests/signalr/node_modules) connects through a TCP proxy in this process and joins a
// trade room; the seller posts `rate` messages a second over REST for 12 s. Two seconds in,
// the proxy cuts the client's TCP connection and holds the network away for `drop_ms`
// (default 5000); the client's reconnect waits at the proxy until then. Prints one JSON
// line: messages posted and received, lost, duplicated, out of order, and the recovery
// times from the moment the new socket reaches the server: to the first message after it
// (one sent again from the server's buffer) and to the first message posted after it (a
// live one). Loopback only; bounded in time.
"use strict";

const path = require("path");
const net = require("net");
const modules = path.join(__dirname, "..", "..", "tests", "signalr", "node_modules");
const signalR = require(path.join(modules, "@microsoft", "signalr"));

const [url, buyer, seller, protocol = "json", dropArg = "5000", rateArg = "100"] = process.argv.slice(2);
if (!url || !buyer || !seller) {
  console.error("usage: reconnect.js URL BUYER_JWT SELLER_JWT [json|messagepack] [drop_ms] [rate]");
  process.exit(64);
}
const dropMs = Number(dropArg);
const rate = Number(rateArg);
const streamMs = 12000;
const target = new URL(url);

async function api(method, p, token, body) {
  const res = await fetch(url + p, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body && !(body instanceof FormData) ? { "Content-Type": "application/json" } : {}) },
    body: body instanceof FormData ? body : body && JSON.stringify(body),
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

// The proxy: cut() ends every connection and holds new ones until `heldUntil`.
let live = [];
let heldUntil = 0;
let reconnectedAt = null;
let accepted = 0;
const proxy = net.createServer((client) => {
  accepted += 1;
  const n = accepted;
  live.push(client);
  const wait = Math.max(0, heldUntil - Date.now());
  client.pause();
  setTimeout(() => {
    const server = net.connect(Number(target.port), target.hostname, () => {
      if (n > 1 && reconnectedAt === null) reconnectedAt = performance.now();
      client.pipe(server);
      server.pipe(client);
      client.resume();
    });
    live.push(server);
    const end = () => { client.destroy(); server.destroy(); };
    client.on("error", end); server.on("error", end); client.on("close", end); server.on("close", end);
  }, wait);
});

function cut() {
  heldUntil = Date.now() + dropMs;
  for (const s of live) s.destroy();
  live = [];
}

async function main() {
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  const via = `http://127.0.0.1:${proxy.address().port}`;
  const ticket = await api("POST", "/api/tickets", seller, { title: "reconnect bench", unitPrice: 1000, totalQuantity: 1 });
  const room = (await api("POST", "/api/chat/rooms", buyer, { ticketId: ticket.data.ticketId })).data.roomId;

  const builder = new signalR.HubConnectionBuilder()
    .withUrl(via + "/hubs/chat", { accessTokenFactory: () => buyer, transport: signalR.HttpTransportType.WebSockets })
    .withStatefulReconnect()
    .configureLogging(signalR.LogLevel.Error);
  if (protocol === "messagepack") {
    const { MessagePackHubProtocol } = require(path.join(modules, "@microsoft", "signalr-protocol-msgpack"));
    builder.withHubProtocol(new MessagePackHubProtocol());
  }
  const hub = builder.build();
  const received = [];
  let firstAfter = null;
  let firstLiveAfter = null;
  const postedAt = new Map();
  hub.on("ReceiveMessage", (m) => {
    const now = performance.now();
    received.push(m.messageId);
    if (reconnectedAt !== null && firstAfter === null) firstAfter = now;
    const at = postedAt.get(m.messageId);
    if (reconnectedAt !== null && firstLiveAfter === null && at !== undefined && at >= reconnectedAt) firstLiveAfter = now;
  });
  let closed = null;
  hub.onclose((e) => { closed = e ? String(e.message || e) : "closed"; });
  await hub.start();
  await hub.invoke("JoinRoom", room);

  const posted = [];
  const started = Date.now();
  let cutDone = false;
  let i = 0;
  while (Date.now() - started < streamMs) {
    if (!cutDone && Date.now() - started >= 2000) { cut(); cutDone = true; }
    const sentAt = performance.now();
    const form = new FormData();
    form.append("roomId", String(room));
    form.append("message", `stream ${i++}`);
    const r = await api("POST", "/api/chat/messages", seller, form);
    posted.push(r.data.messageId);
    postedAt.set(r.data.messageId, sentAt);
    const next = started + (i * 1000) / rate;
    await new Promise((res) => setTimeout(res, Math.max(0, next - Date.now())));
  }
  const deadline = Date.now() + 15000;
  while (received.length < posted.length && Date.now() < deadline && !closed) await new Promise((r) => setTimeout(r, 50));
  const got = new Set(received);
  const out = {
    protocol, drop_ms: dropMs, rate, posted: posted.length, received: received.length,
    lost: posted.filter((id) => !got.has(id)).length,
    duplicated: received.length - got.size,
    in_order: received.every((id, k) => k === 0 || id > received[k - 1]),
    tcp_connections: accepted,
    closed,
    recovery_ms_to_first_message: firstAfter && reconnectedAt ? +(firstAfter - reconnectedAt).toFixed(1) : null,
    recovery_ms_to_first_live_message: firstLiveAfter && reconnectedAt ? +(firstLiveAfter - reconnectedAt).toFixed(1) : null,
  };
  console.log(JSON.stringify(out));
  const ok = out.lost === 0 && out.duplicated === 0 && out.in_order && !out.closed;
  await hub.stop().catch(() => {});
  proxy.close();
  process.exit(ok ? 0 : 1);
}

setTimeout(() => { console.error("timed out"); process.exit(2); }, 60000).unref();
main().catch((e) => { console.error(String(e.stack || e)); process.exit(1); });
