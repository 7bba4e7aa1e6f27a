// Node.js peer of bench/apps/proxy.lua (figure 9): every request goes to the upstream with
// http.request over a keep-alive Agent (one per worker), and the upstream's status, Content-Type
// and body come back. Usage: node node_proxy.js PORT WORKERS SCHED (as bench/peers/node_hello.js;
// SCHED rr: cluster.SCHED_RR) with UPSTREAM_PORT (127.0.0.1) in the environment.
'use strict';
const cluster = require('cluster');
const http = require('http');

const port = Number(process.argv[2] || 8080);
const workers = Number(process.argv[3] || 2);
const sched = process.argv[4] || 'rr';
const upstreamPort = Number(process.env.UPSTREAM_PORT || 8081);

function serve() {
  const agent = new http.Agent({ keepAlive: true });
  http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, path: req.url, method: 'GET', agent }, (ur) => {
      const chunks = [];
      ur.on('data', (c) => chunks.push(c));
      ur.on('end', () => {
        const body = Buffer.concat(chunks);
        res.writeHead(ur.statusCode, { 'Content-Type': ur.headers['content-type'] || 'text/plain', 'Content-Length': body.length });
        res.end(body);
      });
    });
    up.on('error', (e) => {
      if (res.headersSent) { res.destroy(); return; }
      res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end('bad gateway: ' + e.message + '\n');
    });
    up.end();
  }).listen(port, '127.0.0.1');
}

if (sched === 'single') {
  serve();
} else {
  cluster.schedulingPolicy = sched === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  if (cluster.isPrimary) {
    let stopping = false;
    for (let i = 0; i < workers; i++) cluster.fork();
    cluster.on('exit', () => {
      if (!stopping) cluster.fork();
    });
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
