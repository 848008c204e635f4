// A Socket.IO server (npm `socket.io`, default options) for tests/foreign_http.rs.
//
// Usage: node sio_server.js PORT NAME   (PORT 0: any free port)
//
// Listens on 127.0.0.1:PORT (plain HTTP: wsgate terminates TLS), prints
// `listening PORT` once bound, answers every `echo` event with an ack
// { from: NAME, data }, and prints one `CONNECTION_ERROR code message` line for
// every engine.io connection error (code 1 is "Session ID unknown": a request of a
// session that landed on the wrong backend).
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2]);
const name = process.argv[3];
if (!Number.isInteger(port) || !name) {
  console.error('usage: node sio_server.js PORT NAME');
  process.exit(2);
}

const server = http.createServer();
const io = new Server(server);
io.engine.on('connection_error', (err) => {
  console.log(`CONNECTION_ERROR ${err.code} ${err.message}`);
});
io.on('connection', (socket) => {
  socket.on('echo', (data, ack) => {
    if (typeof ack === 'function') ack({ from: name, data });
  });
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
