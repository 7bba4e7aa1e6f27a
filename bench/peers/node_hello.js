// Node.js peer of bench/apps/hello.lua: "Hello, World!\n" on every path but /pid (the serving
// process's pid, for the restart figure), /plaintext and /json (TechEmpower's tests, the peer of
// bench/apps/techempower.lua: Server, Date and Content-Type headers; the JSON message made with
// JSON.stringify per request, as TechEmpower's Node.js entry does).
// Usage: node node_hello.js PORT WORKERS SCHED   SCHED: rr (cluster.SCHED_RR), none
// (cluster.SCHED_NONE: the workers share the listening socket) or single (no cluster: one
// process). The cluster master restarts a worker that exits (restart-on-exit), as luacluster does.
'use strict';
const cluster = require('cluster');
const http = require('http');

const port = Number(process.argv[2] || 8080);
const workers = Number(process.argv[3] || 2);
const sched = process.argv[4] || 'rr';
const body = 'Hello, World!\n';

function serve() {
  http.createServer((req, res) => {
    if (req.url === '/pid') {
      const s = String(process.pid) + '\n';
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': s.length });
      res.end(s);
      return;
    }
    if (req.url === '/plaintext') {
      res.writeHead(200, { 'Server': 'Node', 'Content-Type': 'text/plain', 'Content-Length': 13 });
      res.end('Hello, World!');
      return;
    }
    if (req.url === '/json') {
      const s = JSON.stringify({ message: 'Hello, World!' });
      res.writeHead(200, { 'Server': 'Node', 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(s) });
      res.end(s);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 14 });
    res.end(body);
  }).listen(port, '127.0.0.1');
}

if (sched === 'single') {
  serve();
} else {
  cluster.schedulingPolicy = sched === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  if (cluster.isPrimary) {
    for (let i = 0; i < workers; i++) cluster.fork();
    cluster.on('exit', (w, code, signal) => {
      if (!stopping) cluster.fork();
    });
    let stopping = false;
    const stop = () => {
      stopping = true;
      for (const id in cluster.workers) cluster.workers[id].process.kill('SIGKILL');
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  } else {
    serve();
  }
}
