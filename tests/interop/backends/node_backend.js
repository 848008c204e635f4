// Interop backend: Node `ws` WebSocketServer, plain ws on 127.0.0.1.
//
// Usage: node node_backend.js --port PORT --name NAME
//
// Speaks the command protocol of tests/interop/README.md: echoes text and binary,
// answers cmd:who, cmd:ext, cmd:fragment, cmd:ping and cmd:close:CODE:REASON, selects
// subprotocol "chat" when offered, negotiates permessage-deflate.
'use strict';

const { WebSocketServer } = require('ws');

const FRAGMENTS = ['frag1:' + 'x'.repeat(9994), 'frag2:' + 'x'.repeat(9994), 'frag3:' + 'x'.repeat(994)];
const PING_PAYLOAD = 'ping-b2c';

function arg(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const port = Number(arg('--port'));
const name = arg('--name');
if (!Number.isInteger(port) || !name) {
  console.error('usage: node node_backend.js --port PORT --name NAME');
  process.exit(2);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: true,
  maxPayload: 64 * 1024 * 1024,
  handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
});

// The response header lines are final here; remember what was negotiated.
wss.on('headers', (headers, req) => {
  const line = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
  req.negotiatedExtensions = line ? line.slice(line.indexOf(':') + 1).trim() : '';
});

wss.on('connection', (ws, req) => {
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString('utf8');
    if (text === null || !text.startsWith('cmd:')) {
      ws.send(data, { binary: isBinary });
    } else if (text === 'cmd:who') {
      ws.send(`who:${name}`);
    } else if (text === 'cmd:ext') {
      ws.send(`ext:${req.negotiatedExtensions}`);
    } else if (text === 'cmd:fragment') {
      // `fin: false` ends a frame without ending the message.
      ws.send(FRAGMENTS[0], { fin: false });
      ws.send(FRAGMENTS[1], { fin: false });
      ws.send(FRAGMENTS[2], { fin: true });
    } else if (text === 'cmd:ping') {
      const onPong = (payload) => {
        if (payload.toString('utf8') !== PING_PAYLOAD) return;
        ws.off('pong', onPong);
        ws.send('pong-ok');
      };
      ws.on('pong', onPong);
      ws.ping(PING_PAYLOAD);
    } else if (text.startsWith('cmd:close:')) {
      const rest = text.slice('cmd:close:'.length);
      const colon = rest.indexOf(':');
      const code = Number(colon < 0 ? rest : rest.slice(0, colon));
      ws.close(code, colon < 0 ? '' : rest.slice(colon + 1));
    } else {
      ws.send(text);
    }
  });
  ws.on('error', () => {});
});

wss.on('listening', () => console.error(`node_backend ${name} on 127.0.0.1:${port}`));
