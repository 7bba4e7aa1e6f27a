// A WebSocket client on Node's `ws` (npm, installed by spec/ws_node_spec.lua into spec/.node) for
// that spec. Usage: node ws_node_client.js MODE URL -> one line per observation on stdout; exits 0
// unless it crashed or timed out (then 1, the reason on stderr).
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '.node', 'node_modules', 'ws'));

const [mode, url] = process.argv.slice(2);
const say = (...a) => console.log(...a);
setTimeout(() => { console.error('timeout'); process.exit(1); }, 20000).unref();

// open(opts) -> { ws, next(): the next message as [kind, Buffer], closed: Promise<[code, reason]> }
function open(protocols, opts) {
  const ws = new WebSocket(url, protocols || [], opts || {});
  const queue = [], waiting = [];
  ws.on('message', (data, isBinary) => {
    const m = [isBinary ? 'binary' : 'text', Buffer.isBuffer(data) ? data : Buffer.concat(data)];
    if (waiting.length) waiting.shift()(m); else queue.push(m);
  });
  ws.on('upgrade', (res) => say('extensions-header', JSON.stringify(res.headers['sec-websocket-extensions'] || '')));
  ws.on('error', (e) => say('error', e.message));
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve([code, reason.toString()])));
  const opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('close', () => reject(new Error('closed before open'))); });
  const next = () => queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r));
  return { ws, next, closed, opened };
}

async function echo() {
  const c = open(['superchat', 'chat'], { perMessageDeflate: false });
  await c.opened;
  say('protocol', c.ws.protocol);
  c.ws.send('hello \u03ba');
  let [kind, data] = await c.next();
  say(kind, data.toString());
  c.ws.send(Buffer.from([0, 1, 255]));
  [kind, data] = await c.next();
  say(kind, data.toString('hex'));
  // a message in 3 fragments (ws sends a frame per send with fin: false, then continuations)
  c.ws.send('frag1', { fin: false });
  c.ws.send('frag2', { fin: false });
  c.ws.send('frag3', { fin: true });
  [kind, data] = await c.next();
  say('fragments', kind, data.toString());
  c.ws.send(Buffer.from('ab'), { binary: true, fin: false });
  c.ws.send(Buffer.from('cd'), { binary: true, fin: true });
  [kind, data] = await c.next();
  say('fragments', kind, data.toString());
  const pong = new Promise((r) => c.ws.once('pong', r));
  c.ws.ping('p1');
  say('pong', (await pong).toString());
  const big = Buffer.alloc(1048576 - 16, 'x').toString();
  c.ws.send(big);
  [kind, data] = await c.next();
  say('big', kind, data.length, data.toString() === big);
  const bin = Buffer.alloc(200000);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 7) & 255;
  c.ws.send(bin);
  [kind, data] = await c.next();
  say('bigbinary', kind, data.length, data.equals(bin));
  c.ws.close(1000);
  const [code] = await c.closed;
  say('close', code);
}

async function clientClose(code, reason) {
  const c = open([], { perMessageDeflate: false });
  await c.opened;
  c.ws.close(code, reason);
  const [got, why] = await c.closed;
  say('close', got, JSON.stringify(why));
}

// the server closes: after our message ("/close" app path) or on a message over its limit
async function serverClose(msg) {
  const c = open([], { perMessageDeflate: false });
  await c.opened;
  c.ws.send(msg);
  const [code, why] = await c.closed;
  say('close', code, JSON.stringify(why));
}

// permessage-deflate offered (ws offers it by default); prints what the server answered and
// whether compressible and incompressible messages come back intact
async function deflate() {
  const c = open([], { perMessageDeflate: { threshold: 0 } });
  await c.opened;
  say('extensions', JSON.stringify(c.ws.extensions));
  const text = 'compress me '.repeat(10000);
  c.ws.send(text);
  let [kind, data] = await c.next();
  say('text', kind, data.length, data.toString() === text);
  const rnd = require('crypto').randomBytes(70000);
  c.ws.send(rnd);
  [kind, data] = await c.next();
  say('binary', kind, data.length, data.equals(rnd));
  for (let i = 0; i < 20; i++) c.ws.send('message ' + i);
  const got = [];
  for (let i = 0; i < 20; i++) got.push((await c.next())[1].toString());
  say('sequence', got.every((m, i) => m === 'message ' + i));
  c.ws.close(1000);
  say('close', (await c.closed)[0]);
}

const modes = {
  echo,
  client_close: () => clientClose(4000, 'bye \u03ba'),
  client_close_1001: () => clientClose(1001, ''),
  server_close: () => serverClose('close me'),
  too_big: () => serverClose('y'.repeat(101)),
  deflate,
};
if (!modes[mode]) { console.error('unknown mode ' + mode); process.exit(2); }
modes[mode]().then(() => process.exit(0), (e) => { console.error(e.stack || String(e)); process.exit(1); });
