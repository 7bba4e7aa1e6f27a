// The Node.js peer of bench/ipc.lua: the same figures over process.send between a parent and
// a child started with child_process.fork (the channel cluster workers use), default 'json'
// serialization. Prints one "name value" line per figure.
// Run alone: node bench/peers/node_ipc.js [seconds_per_figure]
'use strict';
const { fork } = require('child_process');

const BATCH = 1000;

if (process.argv[2] === 'child') {
  let count = 0;
  process.on('message', (m) => {
    switch (m.op) {
      case 'echo': process.send(m); break;
      case 'oneway':
        count++;
        if (count % BATCH === 0) process.send({ op: 'ack' });
        break;
      case 'req': process.send({ op: 'rep', id: m.id, body: m.body }); break;
    }
  });
  return;
}

const seconds = Number(process.argv[2]) || 2;
const small = { op: 'echo', seq: 1, name: 'small' };
function kib() {
  const items = [];
  for (let i = 1; i <= 13; i++) items.push({ k: 'item' + String(i).padStart(3, '0'), v: i * 1.5, s: 'x'.repeat(40) });
  return { id: 12345, user: 'someone@example.com', tags: ['a', 'b', 'c'], items };
}
const big = kib();

const child = fork(__filename, ['child'], { stdio: 'inherit' });
let onMessage = null;
const pending = new Map();
let nextId = 0;
child.on('message', (m) => {
  if (m.op === 'rep') {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (p) p(m.body);
  } else if (onMessage) onMessage(m);
});

function request(body) {
  return new Promise((resolve) => {
    const id = ++nextId;
    pending.set(id, resolve);
    child.send({ op: 'req', id, body });
  });
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

function pingpong(payload) {
  return new Promise((resolve) => {
    const msg = Object.assign({}, payload, { op: 'echo' });
    const t0 = now();
    const deadline = t0 + seconds * 1000;
    let n = 0;
    onMessage = () => {
      n++;
      const t = now();
      if (t < deadline) child.send(msg);
      else { onMessage = null; resolve(n / ((t - t0) / 1000)); }
    };
    child.send(msg);
  });
}

function pipelined(payload) {
  return new Promise((resolve) => {
    const msg = Object.assign({}, payload, { op: 'oneway' });
    const t0 = now();
    const deadline = t0 + seconds * 1000;
    let sent = 0, acked = 0, stop = false;
    const batch = () => { for (let i = 0; i < BATCH; i++) child.send(msg); sent++; };
    onMessage = () => {
      acked++;
      const t = now();
      if (!stop && t < deadline) batch();
      else stop = true;
      if (stop && acked === sent) { onMessage = null; resolve(acked * BATCH / ((t - t0) / 1000)); }
    };
    batch(); batch();
  });
}

async function requests(payload, inflight) {
  const t0 = now();
  const deadline = t0 + seconds * 1000;
  let n = 0;
  async function loop() {
    while (now() < deadline) {
      await request(payload);
      n++;
    }
  }
  const loops = [];
  for (let i = 0; i < inflight; i++) loops.push(loop());
  await Promise.all(loops);
  return n / ((now() - t0) / 1000);
}

(async () => {
  await new Promise((r) => setTimeout(r, 100)); // the child is up
  const out = [];
  out.push(['pingpong_small', await pingpong(small)]);
  out.push(['pingpong_1k', await pingpong(big)]);
  out.push(['pipelined_small', await pipelined(small)]);
  out.push(['pipelined_1k', await pipelined(big)]);
  out.push(['request_1', await requests(small, 1)]);
  out.push(['request_100', await requests(small, 100)]);
  out.push(['bytes_small', JSON.stringify(small).length]);
  out.push(['bytes_1k', JSON.stringify(big).length]);
  for (const [k, v] of out) console.log(k + ' ' + v.toFixed(0));
  console.log('version ' + process.version);
  child.disconnect();
})();
