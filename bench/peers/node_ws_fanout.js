// Node.js peer of bench/apps/ws_fanout.lua (figure 15): the `ws` package in a cluster of
// WORKERS (node_ws_cluster.js), publishing across workers as @socket.io/cluster-adapter does
// over the cluster's IPC channel: the worker that publishes sends to its own clients and
// process.send()s the message to the primary, which sends it to every other worker; each writes
// it to each of its clients (ws.send per client). Every WebSocket is told "ok" once it is counted
// as a subscriber; GET /publish?DATA publishes DATA.
// Usage: node node_ws_fanout.js PORT WORKERS
'use strict';
const http = require('http');
const runCluster = require('./node_ws_cluster');

const port = Number(process.argv[2] || 8080);
const workers = Number(process.argv[3] || 2);

function serve() {
  const { WebSocketServer } = require('ws');
  const clients = new Set();
  const broadcast = (data) => {
    for (const ws of clients) ws.send(data);
  };
  const server = http.createServer((req, res) => {
    const q = req.url.indexOf('?');
    if (req.url.startsWith('/publish')) {
      const data = q >= 0 ? req.url.slice(q + 1) : '';
      broadcast(data);
      process.send({ type: 'pub', data });
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
    res.end('ok');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
    ws.send('ok');
  });
  process.on('message', (msg) => {
    if (msg && msg.type === 'pub') broadcast(msg.data);
  });
  server.listen(port, '127.0.0.1');
}

// the primary relays a worker's publish to every other worker (socket.io's cluster adapter)
runCluster(workers, serve, (cluster) => {
  cluster.on('message', (from, msg) => {
    if (!msg || msg.type !== 'pub') return;
    for (const id in cluster.workers) {
      if (cluster.workers[id] !== from) cluster.workers[id].send(msg);
    }
  });
});
