-- bench/lib/report.lua: from the raw samples of a run to figures (median, spread over the
-- repeats, ratios to the peers and to the probe, each ratio the median of per-repeat ratios of
-- systems measured next to each other), the targets of issues 7 and 14, and the three outputs: the
-- table on stdout (and as markdown), the JSON file, and the SVG bar chart. Figures 8-10 and
-- their targets are issue 15's (the outbound side: Redis, a proxy, pooled connections); 11-13
-- issue 16's (shared dictionaries against OpenResty's, the rate limiter on one).
local St = require("stats")

local M = {}

-- ---- building figures ----

local function fig(list, o)
  o.rows = {}
  o.by_id = {}
  list[#list + 1] = o
  return o
end

local function row(f, id, label, kind, samples, extra)
  local r = { id = id, label = label, kind = kind, samples = samples, summary = St.summary(samples or {}), ratios = {} }
  for k, v in pairs(extra or {}) do r[k] = v end
  f.rows[#f.rows + 1] = r
  f.by_id = f.by_id or {}
  f.by_id[id] = r
  return r
end

-- ratio of row `id` to each of `vs` (ids of rows in the same figure), paired by repeat; or,
-- how = "medians" for samples not taken side by side, the ratio of the medians with the widest
-- range the samples allow (min/max .. max/min)
local function ratios(f, id, vs, how)
  local r = f.by_id[id]
  if not r then return end
  for _, v in ipairs(vs) do
    local o = f.by_id[v]
    if o and o.samples and #o.samples > 0 then
      local s
      if how == "medians" then
        local a, b = r.summary, o.summary
        s = a.median and b.median and b.median ~= 0 and
          { median = a.median / b.median, min = a.min / b.max, max = a.max / b.min, n = math.min(a.n, b.n) } or { n = 0 }
      else
        s = St.paired(r.samples, o.samples)
      end
      r.ratios[#r.ratios + 1] = { vs = v, label = o.short or o.label, summary = s, how = how }
    end
  end
end

local SHORT = {
  node_rr = "Node rr", node_shared = "Node shared", node_single = "Node single", nginx = "nginx",
  nginx_lua = "nginx+Lua", probe_hello = "probe", probe_dispatch = "dispatch probe", node = "Node", probe = "probe",
  pm2 = "PM2", lc = "luacluster", openresty = "OpenResty", nginx_proxy = "nginx proxy_pass", node_proxy = "Node",
}

-- figures 14-16 name their rows lc, node, openresty; the fan-out's Lua-loop row lc_lua
local WS_SHORT = { lc = "luacluster", lc_sub = "ws:subscribe", lc_lua = "Lua loop", node = "Node ws", openresty = "OpenResty", probe = "probe" }

local function kb_to_mb(xs)
  local t = {}
  for i, x in pairs(xs) do t[i] = x / 1024 end
  return t
end

function M.build(R)
  local figs = {}
  -- 1. HTTP
  if R.http then
    local peers = { "node_rr", "node_shared", "node_single", "nginx", "nginx_lua" }
    for _, conn in ipairs({ "ka", "close" }) do
      local f = fig(figs, {
        id = conn == "ka" and "http_keepalive" or "http_close", group = 1,
        title = conn == "ka" and "1. HTTP hello, keep-alive, 2 workers (wrk -t1 -c64)" or "1. HTTP hello, Connection: close (a new connection per request), 2 workers",
        unit = "req/s", better = "higher",
      })
      local order = { "lc_dispatch", "lc_shared", "lc_reuseport", "lc_ports", "node_rr", "node_shared", "node_single", "nginx", "nginx_lua", "probe_hello", "probe_dispatch" }
      for _, id in ipairs(order) do
        local d = R.http[id]
        if d and #d[conn] > 0 then
          row(f, id, d.label, d.kind, d[conn], { short = SHORT[id], failed = d.failed[conn] })
        end
      end
      for _, id in ipairs({ "lc_dispatch", "lc_shared", "lc_reuseport", "lc_ports" }) do
        local vs = { unpack(peers) }
        vs[#vs + 1] = (id == "lc_dispatch" and conn == "close") and "probe_dispatch" or "probe_hello"
        if id == "lc_dispatch" and conn == "ka" then vs[#vs + 1] = "probe_dispatch" end
        ratios(f, id, vs)
      end
    end
    -- 4. scaling
    for _, conn in ipairs({ "ka", "close" }) do
      local f = fig(figs, {
        id = "scaling_" .. conn, group = 4,
        title = "4. Throughput from 1 to 2 workers, " .. (conn == "ka" and "keep-alive" or "Connection: close")
          .. " (2 cores, and wrk takes one of them)",
        unit = "x (2 workers / 1)", better = "higher",
      })
      for _, pair in ipairs({ { "lc_dispatch", "lc_dispatch_w1" }, { "lc_reuseport", "lc_reuseport_w1" }, { "node_rr", "node_rr_w1" },
        { "nginx", "nginx_w1" }, { "probe_hello", "probe_hello_w1" } }) do
        local two, one = R.http[pair[1]], R.http[pair[2]]
        if two and one and #one[conn] > 0 then
          local s = St.paired(two[conn], one[conn])
          local r = row(f, pair[1], two.label, two.kind, s.samples or {}, { short = SHORT[pair[1]] })
          r.one = St.summary(one[conn])
          r.two = St.summary(two[conn])
        end
      end
    end
  end
  -- 2. IPC
  if R.ipc then
    for _, fd in ipairs(R.ipc.figures) do
      local d = R.ipc.data[fd.id]
      local f = fig(figs, { id = "ipc_" .. fd.id, group = 2, title = "2. " .. fd.title, unit = fd.unit, better = "higher" })
      row(f, "lc", "luacluster master<->worker", "luacluster", d.lc, { short = "luacluster" })
      row(f, "node", "Node process.send", "peer", d.node, { short = "Node" })
      if fd.probe and #d.probe > 0 then
        row(f, "probe", string.format("probe: raw socketpair, %d-byte messages", R.ipc.sizes[fd.probe[2]]), "probe", d.probe, { short = "probe" })
      end
      ratios(f, "lc", { "node", "probe" })
    end
  end
  -- 3. life
  if R.start then
    local order = { "lc", "node_rr", "node_single", "nginx", "nginx_lua" }
    local fm = fig(figs, { id = "rss_master", group = 3, title = "3. Idle RSS of the master (single process: the process)", unit = "MB", better = "lower" })
    local fw = fig(figs, { id = "rss_worker", group = 3, title = "3. Idle RSS of a worker (mean of the workers)", unit = "MB", better = "lower" })
    local fs = fig(figs, { id = "start_200", group = 3, title = "3. Start to first 200, 2 workers", unit = "ms", better = "lower" })
    for _, id in ipairs(order) do
      local d = R.start[id]
      if d then
        row(fm, id, d.label, d.kind, kb_to_mb(d.master_kb), { short = SHORT[id] })
        row(fw, id, d.label, d.kind, kb_to_mb(d.worker_kb), { short = SHORT[id] })
        row(fs, id, d.label, d.kind, d.start_ms, { short = SHORT[id] })
      end
    end
    local vs = { "node_rr", "node_single", "nginx", "nginx_lua" }
    ratios(fm, "lc", vs)
    ratios(fw, "lc", vs)
    ratios(fs, "lc", vs)
  end
  if R.restart then
    local f = fig(figs, { id = "restart", group = 3, title = "3. SIGKILLed worker to its replacement serving", unit = "ms", better = "lower" })
    for _, id in ipairs({ "lc", "lc_reuseport", "node_rr" }) do
      local d = R.restart[id]
      if d then row(f, id, d.label, d.kind, d.ms, { short = SHORT[id], failed = d.failed }) end
    end
    ratios(f, "lc", { "node_rr" })
    ratios(f, "lc_reuseport", { "node_rr" })
  end
  if R.reload then
    local ft = fig(figs, { id = "reload_time", group = 3, title = "3. Reload: the reload command's time (luacluster: until the new generation serves)", unit = "ms", better = "lower" })
    local fn = fig(figs, { id = "reload_new", group = 3, title = "3. Reload: from the command to the new code answering a new connection", unit = "ms", better = "lower" })
    local ff = fig(figs, { id = "reload_failed", group = 3, title = "3. Reload under load: requests without a 2xx, per reload", unit = "requests", better = "lower" })
    for _, id in ipairs({ "lc_dispatch", "pm2" }) do
      local d = R.reload[id]
      if d then
        row(ft, id, d.label, d.kind, d.ms, { short = SHORT[id] or "luacluster" })
        row(fn, id, d.label, d.kind, d.new_ms, { short = SHORT[id] or "luacluster" })
        local per = d.reloads and d.reloads > 0 and d.lost and { d.lost / d.reloads } or {}
        row(ff, id, d.label, d.kind, per, { short = SHORT[id], lost = d.lost,
          note = string.format("%s lost in %d reloads of %s requests", tostring(d.lost), d.reloads or 0, tostring(d.requests)) })
      end
    end
    local w = R.reload.lc_wrk
    if w and #w.ms > 0 then
      row(ft, "lc_wrk", w.label, w.kind, w.ms, { short = "luacluster under wrk" })
      row(ff, "lc_wrk", w.label, w.kind, w.failed, { short = "luacluster under wrk" })
    end
    ratios(ft, "lc_dispatch", { "pm2" }, "medians")
    ratios(ft, "lc_wrk", { "pm2" }, "medians")
    ratios(fn, "lc_dispatch", { "pm2" }, "medians")
  end
  -- 3. the binary upgrade (luacluster upgrade) next to a reload of the same cluster, under wrk -c64
  if R.upgrade then
    local ft = fig(figs, { id = "upgrade_time", group = 3, title = "3. Upgrade of the binary under wrk -c64 keep-alive: the command's time (until the new master serves)", unit = "ms", better = "lower" })
    local ff = fig(figs, { id = "upgrade_failed", group = 3, title = "3. Upgrade of the binary under wrk -c64 keep-alive: requests without a 2xx", unit = "requests", better = "lower" })
    for _, id in ipairs({ "lc_upgrade", "lc_reload" }) do
      local d = R.upgrade[id]
      if d and #d.ms > 0 then
        local short = id == "lc_upgrade" and "upgrade" or "reload"
        row(ft, id, d.label, d.kind, d.ms, { short = short })
        row(ff, id, d.label, d.kind, d.failed, { short = short })
      end
    end
    ratios(ft, "lc_upgrade", { "lc_reload" }, "medians")
  end
  -- 5, 6. TechEmpower plaintext (pipelined) and JSON
  if R.te then
    local lc_ids = { "lc_dispatch", "lc_shared", "lc_reuseport" }
    for _, t in ipairs({
      { test = "plaintext", id = "te_plaintext", group = 5, vs = { "nginx", "nginx_lua", "node_rr" },
        title = "5. TechEmpower plaintext, pipelined x16, 2 workers (wrk -t1 -c256)" },
      { test = "json", id = "te_json", group = 6, vs = { "nginx_lua", "node_rr" },
        title = "6. TechEmpower JSON, encoded per request (lua-cjson; Node: JSON.stringify), 2 workers (wrk -t1 -c256)" },
    }) do
      local f
      for _, id in ipairs({ "lc_dispatch", "lc_shared", "lc_reuseport", "node_rr", "nginx", "nginx_lua" }) do
        local d = R.te[id]
        if d and #d[t.test] > 0 then
          f = f or fig(figs, { id = t.id, group = t.group, title = t.title, unit = "req/s", better = "higher" })
          row(f, id, d.label, d.kind, d[t.test], { short = SHORT[id], failed = d.failed[t.test] })
        end
      end
      if f then
        for _, id in ipairs(lc_ids) do ratios(f, id, t.vs) end
      end
    end
  end
  -- a memory figure of figure 7's kind (fig_idle.lua's data: kB per held connection); ratios:
  -- { { row id, { peer ids } }, ... }
  local function kb_figure(f, data, ids, short, ratio_list)
    f = fig(figs, f)
    for _, id in ipairs(ids) do
      local d = data[id]
      if d then row(f, id, d.label, d.kind, d.kb, { short = short[id] }) end
    end
    for _, r in ipairs(ratio_list) do ratios(f, r[1], r[2]) end
  end
  -- 7. memory per idle keep-alive connection
  if R.idle then
    kb_figure({ id = "idle_conn_kb", group = 7, unit = "kB", better = "lower",
      title = string.format("7. Memory per idle keep-alive connection, %d held (server RSS, all processes)", R.idle.conns) },
      R.idle.data, { "lc_dispatch", "lc_reuseport", "nginx" }, SHORT, { { "lc_dispatch", { "nginx" } }, { "lc_reuseport", { "nginx" } } })
  end
  -- 8. Redis GET through nginx.redis; 9. proxy to a local nginx upstream
  local function wrk_figure(data, key, ids, vs, f)
    local made
    for _, id in ipairs(ids) do
      local d = data[id]
      if d and #d[key] > 0 then
        made = made or fig(figs, f)
        row(made, id, d.label, d.kind, d[key], { short = SHORT[id], failed = d.failed[key] })
      end
    end
    if made then
      ratios(made, "lc_dispatch", vs)
      ratios(made, "lc_reuseport", vs)
    end
  end
  if R.redis then
    wrk_figure(R.redis, "get", { "lc_dispatch", "lc_reuseport", "openresty" }, { "openresty" },
      { id = "redis_get", group = 8, unit = "req/s", better = "higher",
        title = "8. Redis GET through lua-nginx-redis (nginx.redis), pooled, 2 workers (wrk -t1 -c64)" })
  end
  if R.proxy then
    wrk_figure(R.proxy, "proxy", { "lc_dispatch", "lc_reuseport", "nginx_proxy", "node_proxy" }, { "nginx_proxy", "node_proxy" },
      { id = "proxy", group = 9, unit = "req/s", better = "higher",
        title = "9. Proxy to a local nginx upstream, pooled keep-alive connections, 2 workers (wrk -t1 -c64)" })
  end
  -- 10. memory per idle pooled outbound connection
  if R.pool then
    local d = R.pool.data.lc
    local f = fig(figs, { id = "pool_idle_kb", group = 10, unit = "kB", better = "lower",
      title = string.format("10. Memory per idle pooled outbound connection, %d pooled after a %d-byte read each (one worker)",
        R.pool.conns, R.pool.size) })
    row(f, "lc_rss", d.label .. ": RSS", d.kind, d.rss, { short = "RSS" })
    row(f, "lc_heap", d.label .. ": C + Lua heap in use", d.kind, d.heap, { short = "heap in use" })
    if d.open and #d.open > 0 then
      row(f, "lc_open_heap", "control: held open in use, not pooled: heap in use", "probe", d.open, { short = "in use" })
    end
  end
  -- 11. shared dictionary operations; 12. memory per entry; 13. the rate limiter on one
  if R.shdict then
    local sd = R.shdict
    for _, w in ipairs({ 1, 2 }) do
      local f = fig(figs, { id = "shdict_ops_" .. w, group = 11, unit = "ops/s", better = "higher",
        title = string.format("11. Shared dictionary operations per second, %s (the same loops, %d ms each, timed in the worker)",
          w == 1 and "one worker" or "two workers at once", sd.ms) })
      for _, op in ipairs(sd.ops_list) do
        for _, id in ipairs({ "lc", "openresty" }) do
          local d = sd.ops[id]
          local xs = d and d[op .. "_" .. w]
          if xs and #xs > 0 then
            row(f, id .. "_" .. op, d.label .. ": " .. sd.op_labels[op], d.kind, xs, { short = SHORT[id] })
          end
        end
        ratios(f, "lc_" .. op, { "openresty_" .. op })
      end
    end
    local f = fig(figs, { id = "shdict_mem", group = 12, unit = "bytes", better = "lower",
      title = string.format("12. Shared dictionary memory per entry, %d entries (drop of free_space / entries)", sd.entries) })
    for _, size in ipairs(sd.sizes) do
      for _, id in ipairs({ "lc", "openresty" }) do
        local d = sd.mem[id]
        if d and d[size] and #d[size] > 0 then
          row(f, id .. "_" .. size, string.format("%s: %d-byte values", d.label, size), d.kind, d[size], { short = SHORT[id] })
        end
      end
      ratios(f, "lc_" .. size, { "openresty_" .. size })
    end
  end
  if R.ratelimit then
    local f
    for _, id in ipairs({ "lc_shdict", "lc_rr" }) do
      local d = R.ratelimit[id]
      if d and #d.take > 0 then
        f = f or fig(figs, { id = "ratelimit", group = 13, unit = "req/s", better = "higher",
          title = "13. examples/rate_limiter: shared dictionary vs request/reply to the master, 2 workers (wrk -t1 -c64)" })
        row(f, id, d.label, d.kind, d.take, { short = id == "lc_rr" and "request/reply" or "shared dictionary", failed = d.failed.take })
      end
    end
    if f then ratios(f, "lc_shdict", { "lc_rr" }) end
  end
  -- 14. WebSocket echo; 15. fan-out to 10,000 subscribers; 16. memory per idle WebSocket
  if R.ws_echo then
    local f = fig(figs, { id = "ws_echo", group = 14, unit = "round trips/s", better = "higher",
      title = string.format("14. WebSocket echo, %d connections, closed loop, 32-byte messages, 2 workers", R.ws_echo.conns) })
    local fc = fig(figs, { id = "ws_echo_cpu", group = 14, unit = "us", better = "lower",
      title = "14. WebSocket echo: server CPU per round trip (user + system, all its processes)" })
    for _, id in ipairs({ "lc", "node", "openresty", "probe" }) do
      local d = R.ws_echo.data[id]
      if d and #d.rt > 0 then
        row(f, id, d.label, d.kind, d.rt, { short = WS_SHORT[id], failed = d.failed.rt })
        row(fc, id, d.label, d.kind, d.cpu, { short = WS_SHORT[id] })
      end
    end
    ratios(f, "lc", { "node", "openresty", "probe" })
    ratios(fc, "lc", { "node", "openresty", "probe" })
  end
  if R.ws_fanout then
    local fo = R.ws_fanout
    local title = string.format("one publish to %d WebSockets over 2 workers (median of %d publishes per repeat)", fo.subscribers, fo.publishes)
    local fr = fig(figs, { id = "ws_fanout_rate", group = 15, unit = "deliveries/s", better = "higher", title = "15. Fan-out, deliveries per second: " .. title })
    local fl = fig(figs, { id = "ws_fanout_last", group = 15, unit = "ms", better = "lower", title = "15. Fan-out, time until the last subscriber has it: " .. title })
    local fc = fig(figs, { id = "ws_fanout_cpu", group = 15, unit = "us", better = "lower",
      title = "15. Fan-out: server CPU per delivery (user + system, all its processes, from the last subscription to the last delivery)" })
    for _, id in ipairs({ "lc_sub", "lc_lua", "node", "probe" }) do
      local d = fo.data[id]
      if d and #d.rate > 0 then
        row(fr, id, d.label, d.kind, d.rate, { short = WS_SHORT[id], failed = d.failed.rate })
        row(fl, id, d.label, d.kind, d.last_ms, { short = WS_SHORT[id] })
        row(fc, id, d.label, d.kind, d.cpu or {}, { short = WS_SHORT[id] })
      end
    end
    for _, f in ipairs({ fr, fl, fc }) do
      ratios(f, "lc_sub", { "node", "lc_lua", "probe" })
      ratios(f, "lc_lua", { "node", "probe" })
    end
  end
  if R.ws_idle then
    kb_figure({ id = "ws_idle_kb", group = 16, unit = "kB", better = "lower",
      title = string.format("16. Memory per idle WebSocket, %d held (server RSS, all processes)", R.ws_idle.conns) },
      R.ws_idle.data, { "lc", "node", "openresty" }, WS_SHORT, { { "lc", { "node", "openresty" } } })
  end
  -- 17. TLS (issue 18): full and resumed handshakes, the HTTPS keep-alive hello, each with the
  -- server's CPU per handshake or request (the client shares the 2 cores: that row is the server's own)
  if R.tls then
    local t = R.tls
    local ids = { "lc_dispatch", "lc_reuseport", "nginx" }
    local proto
    for _, id in ipairs(ids) do proto = proto or (t.data[id] and t.data[id].proto) end
    local how = string.format("%s, %s", proto or "TLS", t.cert and t.cert:match("^[^,]+") or "")
    for _, x in ipairs({
      { key = "full", id = "tls_full", unit = "handshakes/s",
        title = string.format("17. HTTPS full handshakes (no resumption; one GET, Connection: close), %s, 2 workers (tls_load, %d connections)", how, t.conns) },
      { key = "full_cpu", id = "tls_full_cpu", unit = "us", better = "lower",
        title = "17. Full handshake: server CPU per handshake (user + system, all its processes)" },
      { key = "resume", id = "tls_resume", unit = "handshakes/s",
        title = string.format("17. HTTPS resumed handshakes (session tickets; one GET, Connection: close), %s, 2 workers (tls_load, %d connections)", how, t.conns) },
      { key = "resume_cpu", id = "tls_resume_cpu", unit = "us", better = "lower",
        title = "17. Resumed handshake: server CPU per handshake (user + system, all its processes)" },
      { key = "ka", id = "tls_ka", unit = "req/s",
        title = string.format("17. HTTPS keep-alive hello, 2 workers (wrk -t1 -c%d https://)", t.wrk_conns or 64) },
      { key = "ka_cpu", id = "tls_ka_cpu", unit = "us", better = "lower",
        title = "17. HTTPS keep-alive: server CPU per request (user + system, all its processes)" },
    }) do
      local f
      for _, id in ipairs(ids) do
        local d = t.data[id]
        if d and d[x.key] and #d[x.key] > 0 then
          f = f or fig(figs, { id = x.id, group = 17, title = x.title, unit = x.unit, better = x.better or "higher" })
          local extra = { short = SHORT[id], failed = d.failed[x.key] }
          if x.key == "resume" and #d.resumed_pct > 0 then
            local m = St.median(d.resumed_pct)
            extra.note = string.format("%.0f%% of handshakes resumed", m or 0)
            extra.resumed_pct = m
          end
          row(f, id, d.label, d.kind, d[x.key], extra)
        end
      end
      if f then
        ratios(f, "lc_dispatch", { "nginx" })
        ratios(f, "lc_reuseport", { "nginx" })
      end
    end
  end
  return figs
end

-- ---- targets ----

local function find(figs, fid, rid)
  for _, f in ipairs(figs) do
    if f.id == fid then return f.by_id and f.by_id[rid] end
  end
end

local function ratio_of(figs, fid, rid, vs)
  local r = find(figs, fid, rid)
  if not r then return nil end
  for _, x in ipairs(r.ratios) do
    if x.vs == vs then return x.summary.median, x.summary end
  end
end

function M.targets(figs, notes)
  local T = {}
  local function add(name, value, text, met, aim)
    T[#T + 1] = { name = name, value = value, text = text, met = met, aim = aim }
  end
  local function cmp(name, fid, rid, vs, goal, text)
    local v = ratio_of(figs, fid, rid, vs)
    if v then add(name, v, string.format("%.2fx %s (target >= %gx)", v, text, goal), v >= goal) else add(name, nil, "not measured", nil) end
  end
  cmp("keep-alive hello >= nginx+Lua", "http_keepalive", "lc_dispatch", "nginx_lua", 1, "nginx+Lua")
  cmp("keep-alive hello >= 1.5x Node cluster", "http_keepalive", "lc_dispatch", "node_rr", 1.5, "Node cluster rr")
  cmp("aim: keep-alive hello >= nginx static", "http_keepalive", "lc_dispatch", "nginx", 1, "nginx return 200")
  cmp("new connection, dispatch >= 3x Node round robin", "http_close", "lc_dispatch", "node_rr", 3, "Node rr")
  cmp("aim: new connection, dispatch >= 0.8x raw dispatcher", "http_close", "lc_dispatch", "probe_dispatch", 0.8, "the dispatch probe")
  cmp("new connection, reuseport >= nginx+Lua", "http_close", "lc_reuseport", "nginx_lua", 1, "nginx+Lua")
  local w = find(figs, "rss_worker", "lc")
  if w and w.summary.median then
    add("idle worker RSS <= 5 MB (aim 4)", w.summary.median, string.format("%.1f MB", w.summary.median), w.summary.median <= 5)
  end
  cmp("IPC pipelined small >= 5x Node (aim 10x), 2 cores", "ipc_pipelined_small", "lc", "node", 5, "Node")
  cmp("IPC pipelined small >= 5x Node (aim 10x), 1 core", "ipc_pipelined_small_pinned", "lc", "node", 5, "Node")
  cmp("IPC ping-pong small >= 0.7x the raw probe, 1 core", "ipc_pingpong_small_pinned", "lc", "probe", 0.7, "the socketpair probe")
  cmp("IPC ping-pong small >= 0.7x the raw probe, 2 cores", "ipc_pingpong_small", "lc", "probe", 0.7, "the socketpair probe (bimodal here: see the note)")
  local function le(name, fid, rid, vs, goal, text)
    local v = ratio_of(figs, fid, rid, vs)
    if v then add(name, v, string.format("%.2fx %s (target <= %g)", v, text, goal), v <= goal) else add(name, nil, "not measured", nil) end
  end
  -- issue 14
  local modes, least = {}, nil
  for _, id in ipairs({ "lc_dispatch", "lc_shared", "lc_reuseport", "lc_ports" }) do
    local v = ratio_of(figs, "http_keepalive", id, "nginx")
    if v then
      modes[#modes + 1] = string.format("%s %.2fx", (id:gsub("^lc_", "")), v)
      least = math.min(least or v, v)
    end
  end
  if least then
    add("keep-alive hello >= nginx static, every mode", least,
      table.concat(modes, ", ") .. " nginx return 200 (target >= 1x)", least >= 1)
  end
  cmp("plaintext x16, dispatch >= 1.3x nginx static", "te_plaintext", "lc_dispatch", "nginx", 1.3, "nginx return 200")
  cmp("plaintext x16, reuseport >= 1.3x nginx static", "te_plaintext", "lc_reuseport", "nginx", 1.3, "nginx return 200")
  cmp("JSON, dispatch >= 1.1x nginx+Lua", "te_json", "lc_dispatch", "nginx_lua", 1.1, "nginx+Lua (cjson)")
  cmp("JSON, reuseport >= 1.1x nginx+Lua", "te_json", "lc_reuseport", "nginx_lua", 1.1, "nginx+Lua (cjson)")
  le("memory per idle keep-alive connection <= nginx's", "idle_conn_kb", "lc_dispatch", "nginx", 1, "nginx's")
  le("start to first 200 <= 1/5 of Node cluster", "start_200", "lc", "node_rr", 0.2, "Node cluster")
  le("SIGKILL to replacement serving <= 1/5 of Node", "restart", "lc", "node_rr", 0.2, "Node cluster")
  -- issue 15
  cmp("Redis GET (nginx.redis), dispatch >= OpenResty", "redis_get", "lc_dispatch", "openresty", 1, "OpenResty, same driver")
  cmp("Redis GET (nginx.redis), reuseport >= OpenResty", "redis_get", "lc_reuseport", "openresty", 1, "OpenResty, same driver")
  cmp("proxy, dispatch >= 0.8x nginx proxy_pass", "proxy", "lc_dispatch", "nginx_proxy", 0.8, "nginx proxy_pass")
  cmp("proxy, reuseport >= 0.8x nginx proxy_pass", "proxy", "lc_reuseport", "nginx_proxy", 0.8, "nginx proxy_pass")
  cmp("proxy, dispatch >= 2x Node", "proxy", "lc_dispatch", "node_proxy", 2, "Node (keep-alive Agent)")
  cmp("proxy, reuseport >= 2x Node", "proxy", "lc_reuseport", "node_proxy", 2, "Node (keep-alive Agent)")
  -- issue 16
  for _, w in ipairs({ 1, 2 }) do
    for _, op in ipairs({ "get", "get_hot", "set", "incr" }) do
      if find(figs, "shdict_ops_" .. w, "lc_" .. op) then
        cmp(string.format("shared dict %s, %s >= OpenResty", op, w == 1 and "1 worker" or "2 at once"), "shdict_ops_" .. w,
          "lc_" .. op, "openresty_" .. op, 1, "OpenResty lua_shared_dict")
      end
    end
  end
  for _, size in ipairs({ 16, 256 }) do
    if find(figs, "shdict_mem", "lc_" .. size) then
      le(string.format("shared dict memory per entry, %d-byte values <= OpenResty's", size), "shdict_mem", "lc_" .. size,
        "openresty_" .. size, 1, "OpenResty's")
    end
  end
  -- a read buffer kept per idle pooled connection would be 16 kB or more each (the figure reads
  -- 16 KiB on every connection before it is pooled): half of that is the bound
  for _, m in ipairs({ { "lc_heap", "heap in use" }, { "lc_rss", "RSS" } }) do
    local r = find(figs, "pool_idle_kb", m[1])
    if r then
      local v = r.summary.max
      add("idle pooled connection < 8 kB (no read buffer), " .. m[2], v,
        v and string.format("%.2f kB per connection, the largest of %d repeats (a kept 16 KiB buffer: >= 16)", v, r.summary.n)
          or "not measured", v and v < 8 or nil)
    end
  end
  -- issue 17
  cmp("WebSocket echo >= 1.5x Node ws cluster", "ws_echo", "lc", "node", 1.5, "Node ws")
  cmp("WebSocket echo >= OpenResty", "ws_echo", "lc", "openresty", 1, "OpenResty lua-resty-websocket")
  if find(figs, "ws_fanout_rate", "lc_sub") then
    cmp("fan-out to 10,000, ws:subscribe >= 3x Node", "ws_fanout_rate", "lc_sub", "node", 3, "Node ws + cluster IPC relay, deliveries/s")
  end
  if find(figs, "ws_fanout_rate", "lc_lua") then
    cmp("fan-out to 10,000, Lua loop (no ws:subscribe) >= 3x Node", "ws_fanout_rate", "lc_lua", "node", 3, "Node ws + cluster IPC relay, deliveries/s")
  end
  if find(figs, "ws_idle_kb", "lc") then
    le("memory per idle WebSocket < Node ws's", "ws_idle_kb", "lc", "node", 1, "Node ws's")
    le("memory per idle WebSocket <= OpenResty's", "ws_idle_kb", "lc", "openresty", 1, "OpenResty's")
  end
  -- issue 18
  for _, id in ipairs({ "lc_dispatch", "lc_reuseport" }) do
    local mode = id:gsub("^lc_", "")
    if find(figs, "tls_full", id) then
      cmp("TLS full handshakes, " .. mode .. " >= 0.9x nginx", "tls_full", id, "nginx", 0.9, "nginx")
    end
    local r = find(figs, "tls_resume", id)
    if r then
      cmp("TLS resumed handshakes, " .. mode .. " >= 0.9x nginx", "tls_resume", id, "nginx", 0.9,
        string.format("nginx (%.0f%% resumed)", r.resumed_pct or 0))
    end
    if find(figs, "tls_ka", id) then
      cmp("HTTPS keep-alive, " .. mode .. " >= 1.0x nginx", "tls_ka", id, "nginx", 1, "nginx")
    end
  end
  local lc_lost = find(figs, "reload_failed", "lc_dispatch")
  local lc_wrk = find(figs, "reload_failed", "lc_wrk")
  local rt = ratio_of(figs, "reload_time", "lc_dispatch", "pm2")
  if lc_lost or lc_wrk then
    local lost = (lc_lost and lc_lost.lost or 0)
    local wrk_failed = lc_wrk and lc_wrk.summary.max or 0
    local t = rt and string.format("; reload command %.3fx PM2's time", rt) or "; PM2 not measured"
    add("0 failed requests in a reload, in under half PM2's time", lost + wrk_failed,
      string.format("%d lost in bench/reload.lua, %d at most per reload under wrk -c64%s", lost, wrk_failed, t),
      lost + wrk_failed == 0 and rt ~= nil and rt < 0.5)
  end
  -- issue 19
  local up = find(figs, "upgrade_failed", "lc_upgrade")
  if up then
    local failed = up.summary.max or 0
    local ur = ratio_of(figs, "upgrade_time", "lc_upgrade", "lc_reload")
    add("upgrade of the binary: 0 failed requests under wrk -c64, under twice a reload's time", failed,
      string.format("%s failed at most per upgrade; upgrade command %s a reload's time", tostring(failed),
        ur and string.format("%.2fx", ur) or "?"),
      failed == 0 and ur ~= nil and ur < 2)
  end
  return T
end

-- ---- text ----

local function si(v, unit)
  if v == nil or v ~= v then return "-" end
  if unit == "MB" then return string.format("%.1f", v) end
  if unit == "kB" then return string.format("%.2f", v) end
  if unit == "ms" then return v < 10 and string.format("%.2f", v) or string.format("%.0f", v) end
  if unit == "us" then return string.format("%.2f", v) end
  if unit:match("^x") then return string.format("%.2fx", v) end
  local a = math.abs(v)
  if a >= 1e6 then return string.format("%.2fM", v / 1e6) end
  if a >= 1e4 then return string.format("%.1fk", v / 1e3) end
  if a >= 1e3 then return string.format("%.2fk", v / 1e3) end
  return string.format("%.0f", v)
end
M.si = si

local function spread(s, unit)
  if not s.median then return "-" end
  if s.n == 1 then return "n=1" end
  return string.format("%s..%s", si(s.min, unit), si(s.max, unit))
end

local function ratio_text(r)
  local s = r.summary
  if not s.median then return nil end
  if s.n > 1 then
    return string.format("%.2fx %s [%.2f..%.2f]", s.median, r.label, s.min, s.max)
  end
  return string.format("%.2fx %s", s.median, r.label)
end

function M.lines(figs)
  local out = {}
  for _, f in ipairs(figs) do
    for _, r in ipairs(f.rows) do
      local rt = {}
      for _, x in ipairs(r.ratios) do rt[#rt + 1] = ratio_text(x) end
      local extra = ""
      if f.id:match("^scaling") and r.one then
        extra = string.format(" (1w %s, 2w %s req/s)", si(r.one.median, "req/s"), si(r.two.median, "req/s"))
      end
      if r.failed and r.failed > 0 and f.unit ~= "requests" then extra = extra .. string.format(" [%d failed]", r.failed) end
      if r.note then extra = extra .. " (" .. r.note .. ")" end
      out[#out + 1] = { fig = f, row = r, value = si(r.summary.median, f.unit), spread = spread(r.summary, f.unit) .. extra, ratios = table.concat(rt, ", ") }
    end
  end
  return out
end

function M.print_table(figs, targets, meta, write)
  write = write or io.write
  write(string.format("\nluacluster bench: %s, %s; %s\n", meta.mode, meta.date, meta.machine))
  write(string.format("medians of %s; spread = min..max over the repeats; ratios = median [min..max] of per-repeat ratios\n\n", meta.repeats_text))
  local lines = M.lines(figs)
  local width = 20
  for _, l in ipairs(lines) do width = math.max(width, #l.row.label) end
  local last
  for _, l in ipairs(lines) do
    if l.fig ~= last then
      write(string.format("%s  [%s, %s is better]\n", l.fig.title, l.fig.unit, l.fig.better))
      last = l.fig
    end
    write(string.format("  %-" .. width .. "s %9s  %-20s %s\n", l.row.label, l.value, l.spread, l.ratios))
  end
  write("\ntargets (issue 7):\n")
  for _, t in ipairs(targets) do
    write(string.format("  %-4s %-56s %s\n", t.met == nil and "n/a" or (t.met and "MET" or "MISS"), t.name, t.text))
  end
  for _, n in ipairs(meta.notes or {}) do write("note: " .. n .. "\n") end
end

function M.markdown(figs, targets, meta)
  local o = {}
  local function w(s) o[#o + 1] = s end
  w(string.format("Run: `%s` on %s; %s. Medians of %s; spread = min..max over the repeats; ratios = median [min..max] of the per-repeat ratios (systems measured next to each other).\n",
    meta.command, meta.date, meta.machine, meta.repeats_text))
  w("| figure | system | median | spread | ratios |")
  w("| --- | --- | ---: | --- | --- |")
  local last
  for _, l in ipairs(M.lines(figs)) do
    local label = l.row.kind == "luacluster" and ("**" .. l.row.label .. "**") or l.row.label
    local title = ""
    if l.fig ~= last then
      title = string.format("%s (%s)", (l.fig.title:gsub("|", "/")), l.fig.unit)
      last = l.fig
    end
    w(string.format("| %s | %s | %s | %s | %s |", title, label, l.value, l.spread, l.ratios))
  end
  w("\n| target | result | met |")
  w("| --- | --- | --- |")
  for _, t in ipairs(targets) do
    w(string.format("| %s | %s | %s |", t.name, t.text, t.met == nil and "n/a" or (t.met and "yes" or "**no**")))
  end
  for _, n in ipairs(meta.notes or {}) do w("\n" .. n) end
  return table.concat(o, "\n") .. "\n"
end

-- ---- JSON ----

function M.json_doc(figs, targets, meta, raw)
  local doc = { meta = meta, figures = {}, targets = targets, raw = raw }
  for _, f in ipairs(figs) do
    local jf = { id = f.id, group = f.group, title = f.title, unit = f.unit, better = f.better, rows = {} }
    for _, r in ipairs(f.rows) do
      local jr = {
        id = r.id, label = r.label, kind = r.kind, samples = r.samples,
        median = r.summary.median, min = r.summary.min, max = r.summary.max, n = r.summary.n,
        spread_pct = r.summary.spread_pct, failed = r.failed, note = r.note, ratios = {},
      }
      for _, x in ipairs(r.ratios) do
        jr.ratios[#jr.ratios + 1] = { vs = x.vs, label = x.label, median = x.summary.median, min = x.summary.min, max = x.summary.max, n = x.summary.n }
      end
      jf.rows[#jf.rows + 1] = jr
    end
    doc.figures[#doc.figures + 1] = jf
  end
  return doc
end

-- a JSON encoder that keeps arrays with holes as arrays (null in the holes) and NaN as null
local function encode(v, out, indent)
  local t = type(v)
  if v == nil then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif v % 1 == 0 and math.abs(v) < 2 ^ 53 then out[#out + 1] = string.format("%d", v)
    else out[#out + 1] = string.format("%.6g", v) end
  elseif t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c)
      return ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" })[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "table" then
    local n, maxi, is_arr = 0, 0, true
    for k in pairs(v) do
      n = n + 1
      if type(k) == "number" and k >= 1 and k % 1 == 0 then maxi = math.max(maxi, k) else is_arr = false end
    end
    local pad = "\n" .. string.rep("  ", indent + 1)
    if n == 0 then out[#out + 1] = "[]" return end
    if is_arr then
      out[#out + 1] = "["
      local simple = true
      for i = 1, maxi do if type(v[i]) == "table" then simple = false end end
      for i = 1, maxi do
        if i > 1 then out[#out + 1] = "," end
        if not simple then out[#out + 1] = pad elseif i > 1 then out[#out + 1] = " " end
        encode(v[i], out, indent + 1)
      end
      out[#out + 1] = simple and "]" or ("\n" .. string.rep("  ", indent) .. "]")
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = pad
        encode(k, out, indent + 1)
        out[#out + 1] = ": "
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        encode(val, out, indent + 1)
      end
      out[#out + 1] = "\n" .. string.rep("  ", indent) .. "}"
    end
  else
    out[#out + 1] = "null"
  end
end

function M.json(doc)
  local out = {}
  encode(doc, out, 0)
  return table.concat(out) .. "\n"
end

-- figures and targets back from a JSON document written by json_doc (bench/run --render)
function M.from_doc(doc)
  local figs = {}
  for _, jf in ipairs(doc.figures or {}) do
    local f = { id = jf.id, group = jf.group, title = jf.title, unit = jf.unit, better = jf.better, rows = {}, by_id = {} }
    for _, jr in ipairs(jf.rows or {}) do
      local r = {
        id = jr.id, label = jr.label, kind = jr.kind, samples = jr.samples or {}, failed = jr.failed, note = jr.note,
        summary = { median = jr.median, min = jr.min, max = jr.max, n = jr.n or 0, spread_pct = jr.spread_pct },
        ratios = {},
      }
      for _, x in ipairs(jr.ratios or {}) do
        r.ratios[#r.ratios + 1] = { vs = x.vs, label = x.label, summary = { median = x.median, min = x.min, max = x.max, n = x.n or 0 } }
      end
      f.rows[#f.rows + 1] = r
      f.by_id[r.id] = r
    end
    figs[#figs + 1] = f
  end
  return figs, doc.targets or {}, doc.meta or {}
end

-- ---- SVG ----

local COLORS = { luacluster = "#2b6cb0", peer = "#a0a0a0", probe = "#38a169" }

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

-- the ratios a bar is labelled with: the main peers and the probe, at most four
local SVG_ORDER = { "node_rr", "node", "node_proxy", "pm2", "openresty", "nginx_proxy", "nginx_lua", "nginx", "probe_dispatch", "probe_hello", "probe",
  "openresty_get", "openresty_get_hot", "openresty_set", "openresty_incr", "openresty_16", "openresty_256", "lc_rr", "lc_lua" }
local function svg_ratios(r)
  local out = {}
  for _, vs in ipairs(SVG_ORDER) do
    for _, x in ipairs(r.ratios) do
      if x.vs == vs and x.summary.median and #out < 4 then out[#out + 1] = x end
    end
  end
  return out
end

function M.svg(figs, meta)
  local W, LABEL, BAR, ROW, PAD = 980, 300, 440, 18, 10
  local o = {}
  local y = 74
  local body = {}
  local function w(s) body[#body + 1] = s end
  for _, f in ipairs(figs) do
    local max = 0
    for _, r in ipairs(f.rows) do
      local v = r.summary.max or r.summary.median or 0
      if v == v and v > max then max = v end
    end
    if max <= 0 then max = 1 end
    w(string.format('<text x="%d" y="%d" class="t">%s <tspan class="u">(%s; %s is better)</tspan></text>', PAD, y, esc(f.title), esc(f.unit), f.better))
    y = y + 8
    for _, r in ipairs(f.rows) do
      local s = r.summary
      local med = s.median
      w(string.format('<text x="%d" y="%d" class="l">%s</text>', LABEL - 6, y + ROW - 5, esc(r.label)))
      if med and med == med then
        local bw = math.max(1, med / max * BAR)
        w(string.format('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>', LABEL, y + 2, bw, ROW - 4, COLORS[r.kind] or "#888"))
        if s.n and s.n > 1 then
          local x1, x2 = LABEL + s.min / max * BAR, LABEL + s.max / max * BAR
          local cy = y + ROW / 2
          w(string.format('<path d="M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f" class="e"/>', x1, cy, x2, x1, cy - 4, cy + 4, x2, cy - 4, cy + 4))
        end
        local txt = si(med, f.unit)
        local rtxt = {}
        for _, x in ipairs(svg_ratios(r)) do
          rtxt[#rtxt + 1] = string.format("%.2fx %s", x.summary.median, x.label)
        end
        if #rtxt > 0 then txt = txt .. "  (" .. table.concat(rtxt, ", ") .. ")" end
        w(string.format('<text x="%.1f" y="%d" class="v">%s</text>', LABEL + math.max(bw, s.max and s.max / max * BAR or 0) + 6, y + ROW - 5, esc(txt)))
      else
        w(string.format('<text x="%d" y="%d" class="v">not measured</text>', LABEL + 4, y + ROW - 5))
      end
      y = y + ROW
    end
    y = y + 26
  end
  local H = y + 10
  o[#o + 1] = string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">', W + 320, H, W + 320, H)
  o[#o + 1] = '<style>.t{font-size:13px;font-weight:bold}.u{font-weight:normal;fill:#555}.l{font-size:11px;text-anchor:end}.v{font-size:11px;fill:#222}.e{stroke:#000;stroke-width:1;fill:none}.h{font-size:15px;font-weight:bold}.s{font-size:11px;fill:#444}</style>'
  o[#o + 1] = string.format('<rect width="100%%" height="100%%" fill="#fff"/>')
  o[#o + 1] = string.format('<text x="%d" y="20" class="h">luacluster vs its peers — %s</text>', PAD, esc(meta.date))
  o[#o + 1] = string.format('<text x="%d" y="36" class="s">%s; %s. Bars: medians; whiskers: min..max.</text>', PAD, esc(meta.machine), esc(meta.repeats_text))
  o[#o + 1] = string.format('<text x="%d" y="50" class="s">Blue: luacluster; grey: its peers; green: the C probes (this architecture\'s ceiling). Beside each luacluster bar: ratios to the peers (medians of per-repeat ratios).</text>', PAD)
  for _, b in ipairs(body) do o[#o + 1] = b end
  o[#o + 1] = "</svg>"
  return table.concat(o, "\n") .. "\n"
end

return M
