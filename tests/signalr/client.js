#!/usr/bin/env node
// A scriptable SignalR client on the official @microsoft/signalr package, for
// tests/api/signalr.rs: it connects to the chat hub, runs a plan, and prints one JSON line
// per thing that happened on stdout (its logs go to stderr).
//
// Usage: node client.js '<plan JSON>'   (or the plan in the SIGNALR_PLAN environment variable)
//
// The plan:
//   url              the server, e.g. "http://127.0.0.1:8080" (required)
//   hub              the hub's path (default "/hubs/chat")
//   token            the JWT, given by accessTokenFactory (none if absent)
//   skipNegotiation  connect straight to the WebSocket (default false: negotiate first)
//   protocol         "json" (default) or "messagepack" (@microsoft/signalr-protocol-msgpack)
//   statefulReconnect  withStatefulReconnect(): a dropped socket is taken over by a new one
//                    on the same connection, and what either side missed is sent again
//   steps            run in order after connecting: {"invoke": "JoinRoom", "args": [1]}
//                    (waits for the Completion), {"send": "JoinRoom", "args": [1]} (no
//                    invocationId), {"sleepMs": 100}
//   stdin            after the steps, read more steps from stdin, one JSON per line, plus
//                    {"waitFor": {"ReceiveMessage": 3}} (until that many arrived in all) and
//                    {"end": true} (finish, as below); EOF also finishes
//   expect           {"ReceiveMessage": 2, "RoomUpdated": 1}: how many events of each target
//                    to wait for before finishing
//   quietMs          after the expected events, keep listening this long (default 300), so
//                    extra events are seen and counted
//   timeoutMs        the whole run (default 15000)
//
// Lines printed: {"kind":"connected","connectionId"}, {"kind":"result","method","args","ok",
// "result"|"error"} per step, {"kind":"ready"} after the plan's steps, {"kind":"event",
// "target","args"} per event, {"kind":"reached","waitFor"}, {"kind":"closed","error"}, and
// last {"kind":"summary","ok","counts","timeout","error"}.
// Exit code: 0 when everything expected came; 1 on an error (cannot connect, the connection
// dropped); 2 on timeout; 64 for a bad plan.
"use strict";

const signalR = require("@microsoft/signalr");
const readline = require("readline");

const TARGETS = [
  "ReceiveMessage",
  "RoomUpdated",
  "UserTyping",
  "UserStatus",
  "MessageRead",
  "MessageUpdated",
  "MessageDeleted",
];

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

let plan;
try {
  plan = JSON.parse(process.argv[2] || process.env.SIGNALR_PLAN || "");
  if (!plan || typeof plan.url !== "string") throw new Error("the plan needs a url");
} catch (e) {
  print({ kind: "summary", ok: false, counts: {}, timeout: false, error: `bad plan: ${e.message}` });
  process.exit(64);
}

const counts = Object.fromEntries(TARGETS.map((t) => [t, 0]));
const expect = plan.expect || {};
const quietMs = plan.quietMs ?? 300;
const timeoutMs = plan.timeoutMs ?? 15000;
let finished = false;
let stopping = false;
let waiters = [];

const logger = {
  log(level, message) {
    if (level >= signalR.LogLevel.Warning) {
      process.stderr.write(`[signalr ${signalR.LogLevel[level]}] ${message}\n`);
    }
  },
};

// WebSockets only: the hub has no other transport.
const options = { transport: signalR.HttpTransportType.WebSockets, skipNegotiation: !!plan.skipNegotiation };
if (plan.token) options.accessTokenFactory = () => plan.token;

const builder = new signalR.HubConnectionBuilder()
  .withUrl(plan.url + (plan.hub || "/hubs/chat"), options)
  .configureLogging(logger);
if (plan.statefulReconnect) builder.withStatefulReconnect();
if (plan.protocol === "messagepack") {
  const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
  builder.withHubProtocol(new MessagePackHubProtocol());
} else if (plan.protocol && plan.protocol !== "json") {
  print({ kind: "summary", ok: false, counts: {}, timeout: false, error: `bad plan: protocol ${plan.protocol}` });
  process.exit(64);
}
const connection = builder.build();

function reached(want) {
  return Object.entries(want).every(([t, n]) => (counts[t] || 0) >= n);
}

function notify() {
  const still = [];
  for (const w of waiters) {
    if (reached(w.want)) w.resolve();
    else still.push(w);
  }
  waiters = still;
}

function waitFor(want) {
  if (reached(want)) return Promise.resolve();
  return new Promise((resolve) => waiters.push({ want, resolve }));
}

for (const target of TARGETS) {
  connection.on(target, (...args) => {
    counts[target] += 1;
    print({ kind: "event", target, args });
    notify();
  });
}

async function exit(code, extra) {
  if (finished) return;
  finished = true;
  print({ kind: "summary", ok: code === 0, counts, timeout: code === 2, error: null, ...extra });
  stopping = true;
  try {
    await Promise.race([connection.stop(), new Promise((r) => setTimeout(r, 2000))]);
  } catch (_) {
    // closing anyway
  }
  process.exit(code);
}

connection.onclose((err) => {
  print({ kind: "closed", error: err ? String(err.message || err) : null });
  if (!stopping) exit(1, { error: `the connection closed: ${err ? err.message || err : "no error"}` });
});

async function step(s) {
  if (typeof s.sleepMs === "number") {
    await new Promise((r) => setTimeout(r, s.sleepMs));
  } else if (s.invoke) {
    const args = s.args || [];
    try {
      const result = await connection.invoke(s.invoke, ...args);
      print({ kind: "result", method: s.invoke, args, ok: true, result: result ?? null });
    } catch (e) {
      print({ kind: "result", method: s.invoke, args, ok: false, error: String(e.message || e) });
    }
  } else if (s.send) {
    const args = s.args || [];
    await connection.send(s.send, ...args);
    print({ kind: "result", method: s.send, args, ok: true, result: null, sent: true });
  } else if (s.waitFor) {
    await waitFor(s.waitFor);
    print({ kind: "reached", waitFor: s.waitFor });
  } else {
    throw new Error(`unknown step ${JSON.stringify(s)}`);
  }
}

async function finish() {
  await waitFor(expect);
  await new Promise((r) => setTimeout(r, quietMs));
  await exit(0);
}

function readStdin() {
  const rl = readline.createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    chain = chain.then(finish);
  };
  rl.on("line", (line) => {
    if (!line.trim() || ended) return;
    let s;
    try {
      s = JSON.parse(line);
    } catch (e) {
      exit(64, { error: `bad stdin line: ${line}` });
      return;
    }
    if (s.end) end();
    else chain = chain.then(() => step(s)).catch((e) => exit(1, { error: String(e.message || e) }));
  });
  rl.on("close", end);
}

async function main() {
  setTimeout(() => exit(2, { error: `timed out after ${timeoutMs} ms` }), timeoutMs);
  try {
    await connection.start();
  } catch (e) {
    const message = String(e.message || e);
    const status = e.statusCode ?? Number((message.match(/Status code '(\d+)'/) || [])[1] || NaN);
    await exit(1, { error: `cannot connect: ${message}`, statusCode: Number.isFinite(status) ? status : null });
    return;
  }
  print({ kind: "connected", connectionId: connection.connectionId });
  for (const s of plan.steps || []) await step(s);
  print({ kind: "ready" });
  if (plan.stdin) readStdin();
  else await finish();
}

main().catch((e) => exit(1, { error: String(e.message || e) }));
