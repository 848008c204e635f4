// A SockJS echo server (npm `sockjs`) for tests/foreign_http.rs.
//
// Usage: node sockjs_server.js   (prints `listening PORT`; plain HTTP on 127.0.0.1)
//
// Echoes every message at prefix /echo. Its own client library is not served (the
// Node client below needs no iframe transport).
'use strict';

const http = require('http');
const sockjs = require('sockjs');

const echo = sockjs.createServer({ prefix: '/echo', log: () => {} });
echo.on('connection', (conn) => {
  conn.on('data', (m) => conn.write(m));
});
const server = http.createServer();
echo.installHandlers(server);
server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
