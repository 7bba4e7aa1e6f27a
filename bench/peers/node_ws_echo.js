// Node.js peer of bench/apps/ws_echo.lua and ws_idle.lua (figures 14 and 16): the `ws` package
// (npm, installed by bench/run into bench/.peers; found through NODE_PATH) on an http server in
// a cluster (node_ws_cluster.js). Every WebSocket echoes each message back as it came; any
// plain GET answers "ok".
// Usage: node node_ws_echo.js PORT WORKERS
'use strict';
const http = require('http');
const runCluster = require('./node_ws_cluster');

const port = Number(process.argv[2] || 8080);
const workers = Number(process.argv[3] || 2);

runCluster(workers, () => {
  const { WebSocketServer } = require('ws');
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
    res.end('ok');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  server.listen(port, '127.0.0.1');
});
