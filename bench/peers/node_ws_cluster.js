// What the Node.js WebSocket peers (node_ws_echo.js, node_ws_fanout.js) share: a cluster of
// `workers` (round robin, Node's default) whose workers run serve(); the primary runs
// onPrimary() if given and, on SIGTERM or SIGINT, SIGKILLs its workers and exits.
'use strict';
const cluster = require('cluster');

module.exports = function runCluster(workers, serve, onPrimary) {
  if (!cluster.isPrimary) {
    serve();
    return;
  }
  cluster.schedulingPolicy = cluster.SCHED_RR;
  for (let i = 0; i < workers; i++) cluster.fork();
  if (onPrimary) onPrimary(cluster);
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGKILL');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
};
