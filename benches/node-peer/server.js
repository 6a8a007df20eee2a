// A plain Node.js WebSocket fan-out server speaking contract C's chat frames, the peer
// that boxoffice's fan-out is measured against (see README.md beside this file).
//
//   node server.js [PORT]      (or PORT=9100 node server.js; listens on 127.0.0.1)
//
// `GET /chat/ws/{room_id}?token=JWT` joins room `room_id` (created on first use). The JWT
// is decoded, not verified: `sub` (a number, "7" or "user_7") is the user, `name` its
// name. `{"type":"message","content":...}` goes to every member of the room, the sender
// too, framed as boxoffice's `message` event (same fields, same key order, one per-room
// `message_id` counter); `{"type":"ping"}` gets `{"type":"pong"}`. No REST, no storage.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 9100);
const rooms = new Map(); // room id -> { members: Set<WebSocket>, last: message id }

function identify(token) {
  try {
    const claims = JSON.parse(Buffer.from(String(token).split('.')[1], 'base64url').toString());
    const id = Number(String(claims.sub ?? claims.user_id).replace(/^user_/, ''));
    if (!Number.isSafeInteger(id) || id <= 0) return null;
    return { id, name: claims.name && String(claims.name).trim() ? claims.name : `user_${id}` };
  } catch {
    return null;
  }
}

const server = http.createServer((req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ noServer: true });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://peer');
  const m = /^\/chat\/ws\/(\d+)\/?$/.exec(url.pathname);
  const me = m && identify(url.searchParams.get('token'));
  if (!me) {
    socket.end(`HTTP/1.1 ${m ? '401 Unauthorized' : '404 Not Found'}\r\nContent-Length: 0\r\n\r\n`);
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => join(ws, Number(m[1]), me));
});

function join(ws, roomId, me) {
  let room = rooms.get(roomId);
  if (!room) rooms.set(roomId, (room = { members: new Set(), last: 0 }));
  room.members.add(ws);
  ws.on('close', () => room.members.delete(ws));
  ws.on('message', (data, isBinary) => {
    let f;
    try {
      f = isBinary ? null : JSON.parse(data);
    } catch {}
    if (f && f.type === 'ping') return ws.send('{"type":"pong"}');
    if (!f || f.type !== 'message' || typeof f.content !== 'string' || !f.content.trim()) {
      return ws.send(JSON.stringify({ type: 'error', detail: 'expected a message with content, or a ping' }));
    }
    // Keys in boxoffice's order (serde_json sorts them), rendered once for every member.
    const frame = Buffer.from(JSON.stringify({
      content: f.content, file_name: null, file_size: null, file_url: null, is_deleted: false,
      is_edited: false, message_id: ++room.last, message_type: f.message_type || 'text',
      reply_to_message_id: f.reply_to_message_id ?? null, room_id: roomId, sender_id: me.id,
      sender_name: me.name, timestamp: new Date().toISOString(), type: 'message',
    }));
    for (const member of room.members) member.send(frame, { binary: false });
  });
}

server.listen(port, '127.0.0.1', () => console.log(`node-peer listening on 127.0.0.1:${server.address().port}`));
