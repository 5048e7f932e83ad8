// A real socket.io server for healgate's end-to-end tests: the upstream that
// stands in for Document Server's co-editing endpoint.
//
//   node server.js PATH
//
// It listens on 127.0.0.1 on a port chosen by the kernel and prints one line
// "LISTENING <port>" once it accepts. Events:
//   "echo" (payload, ack)  -> ack({echo: payload, transport}) (client -> server -> client)
//   on connection it emits "hello" {nonce}; the client must answer with
//   "hello-back" (nonce, ack) and gets ack({ok: nonce matches}) (server -> client -> server).
// Every handshake and upgrade is logged to stdout for the test's failure output.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');

const path = process.argv[2];
if (!path) {
  console.error('usage: node server.js PATH');
  process.exit(2);
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  path,
  transports: ['polling', 'websocket'],
  serveClient: false,
  // Defaults are Document Server's (25 s / 20 s); the tests finish well before.
});

io.engine.on('connection_error', (err) => {
  console.log(`connection_error code=${err.code} message=${err.message}`);
});

io.on('connection', (socket) => {
  const q = socket.handshake.query;
  console.log(`connect id=${socket.id} transport=${socket.conn.transport.name} shardkey=${q.shardkey} xfp=${socket.handshake.headers['x-forwarded-proto'] || ''}`);
  socket.conn.on('upgrade', (t) => console.log(`upgrade id=${socket.id} to=${t.name}`));

  const nonce = crypto.randomBytes(8).toString('hex');
  socket.on('hello-back', (got, ack) => {
    if (typeof ack === 'function') ack({ ok: got === nonce });
  });
  socket.on('echo', (payload, ack) => {
    if (typeof ack === 'function') ack({ echo: payload, transport: socket.conn.transport.name });
  });
  socket.on('disconnect', (reason) => console.log(`disconnect id=${socket.id} reason=${reason}`));
  socket.emit('hello', { nonce });
});

httpServer.listen(0, '127.0.0.1', () => {
  console.log(`LISTENING ${httpServer.address().port}`);
});

function stop() {
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
