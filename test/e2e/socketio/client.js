// A real socket.io client for healgate's end-to-end tests.
//
//   node client.js URL PATH TRANSPORT ROUNDS
//
// It connects to URL (nginx) with socket.io's `path` option PATH, the single
// transport TRANSPORT ("websocket" or "polling", no upgrade), and the query
// shardkey=k, then:
//   1. answers the server's "hello" nonce with "hello-back" and needs ack {ok: true}
//      (server -> client -> server);
//   2. emits ROUNDS "echo" messages with acks and checks each comes back
//      unchanged over the same transport (client -> server -> client).
// On success it prints one line "OK <json summary>" and exits 0; on any error or
// after 20 s it prints "FAIL <reason>" and exits 1.
'use strict';

const { io } = require('socket.io-client');

const [url, path, transport, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg || '5');
if (!url || !path || !['websocket', 'polling'].includes(transport) || !(rounds > 0)) {
  console.error('usage: node client.js URL PATH websocket|polling ROUNDS');
  process.exit(2);
}

function fail(reason) {
  console.log(`FAIL ${reason}`);
  process.exit(1);
}
const deadline = setTimeout(() => fail('timeout after 20s'), 20000);

const socket = io(url, {
  path,
  transports: [transport],
  upgrade: false,
  reconnection: false,
  timeout: 10000,
  query: { shardkey: 'k' },
  extraHeaders: { 'X-Forwarded-Proto': 'https' },
});

socket.on('connect_error', (err) => fail(`connect_error: ${err.message} ${err.description ? JSON.stringify(String(err.description)) : ''}`));
socket.on('disconnect', (reason) => {
  if (!done) fail(`disconnect before done: ${reason}`);
});

let done = false;
const hello = new Promise((resolve, reject) => {
  socket.once('hello', async ({ nonce }) => {
    try {
      const res = await socket.timeout(5000).emitWithAck('hello-back', nonce);
      if (!res || res.ok !== true) return reject(new Error(`hello-back not acknowledged: ${JSON.stringify(res)}`));
      resolve();
    } catch (e) {
      reject(e);
    }
  });
});

socket.on('connect', async () => {
  try {
    await hello;
    for (let i = 0; i < rounds; i++) {
      const payload = { i, text: `message ${i} ✓ a+b%20c`, bytes: 'x'.repeat(1000 + i) };
      const res = await socket.timeout(5000).emitWithAck('echo', payload);
      if (JSON.stringify(res.echo) !== JSON.stringify(payload)) {
        return fail(`echo ${i} differs: ${JSON.stringify(res).slice(0, 200)}`);
      }
      if (res.transport !== transport) return fail(`server saw transport ${res.transport}, want ${transport}`);
    }
    const clientTransport = socket.io.engine.transport.name;
    if (clientTransport !== transport) return fail(`client transport ${clientTransport}, want ${transport}`);
    done = true;
    clearTimeout(deadline);
    console.log(`OK ${JSON.stringify({ transport: clientTransport, rounds, id: socket.id })}`);
    socket.close();
    process.exit(0);
  } catch (e) {
    fail(e && e.message ? e.message : String(e));
  }
});
