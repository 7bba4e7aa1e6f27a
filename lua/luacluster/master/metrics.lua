-- Metrics in the Prometheus text exposition format (version 0.0.4), for `luacluster metrics`
-- and the optional listener `cluster.setup{ metrics = "127.0.0.1:9100" }` (GET /metrics).
-- Per worker process (labels worker, generation): responses by status class, open and
-- accepted connections, a request-duration histogram (counted in C per response, see
-- runtime/http.c), RSS, messages and IPC bytes; per cluster: the generation, reloads done
-- and refused, workers by state, restarts per worker slot. The master asks every worker for
-- its counters in one control frame per scrape (master/stats.lua): a scrape costs the
-- request path nothing, and a worker that does not answer within a second gives its last
-- answer.
local core = require("luacluster.core")
local jobs = require("luacluster.master.jobs")
local log = require("luacluster.lib.log")
local master = require("luacluster.master.core")
local pubsub_redis = require("luacluster.master.pubsub_redis")
local reload = require("luacluster.master.reload")
local shdict = require("luacluster.master.shdict")
local runtime = require("luacluster.lib.runtime")
local stats = require("luacluster.master.stats")
local tables = require("luacluster.lib.tables")
local tls_tickets = require("luacluster.master.tls_tickets")

local _M = {}

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local STATES = { "starting", "online", "listening", "draining" }
local started_at = core.time()


-- ---- the listener's address ----

-- "host:port", "[v6]:port", ":port", a port number or false -> { host =, port = } | false | nil, err
function _M.parse_address(v)
  if v == false or v == nil then
    return false
  end
  local host, port
  if type(v) == "number" then
    host, port = "127.0.0.1", v
  elseif type(v) == "string" then
    host, port = v:match("^%[([%x:.]+)%]:(%d+)$")
    if not host then
      host, port = v:match("^([^:]*):(%d+)$")
    end
    if not host and v:match("^%d+$") then
      host, port = "", v
    end
    port = tonumber(port)
    if host == "" then
      host = "127.0.0.1"
    end
  else
    return nil, "metrics must be \"host:port\", a port number or false"
  end
  if not port or port < 1 or port > 65535 or port % 1 ~= 0 then
    return nil, "metrics must be \"host:port\" with a port from 1 to 65535, not '" .. tostring(v) .. "'"
  end
  return { host = host, port = port }
end


-- ---- the text format ----

local function num(v)
  v = tonumber(v) or 0
  if v ~= v then
    return "NaN"
  elseif v == math.huge then
    return "+Inf"
  elseif v == -math.huge then
    return "-Inf"
  elseif v % 1 == 0 and math.abs(v) < 2 ^ 53 then
    return string.format("%d", v)
  end
  return string.format("%.10g", v)
end


local function label_value(s)
  return (tostring(s):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end


-- labels: an array of { name, value }
local function labels(list)
  if not list or #list == 0 then
    return ""
  end
  local parts = {}
  for i, kv in ipairs(list) do
    parts[i] = kv[1] .. '="' .. label_value(kv[2]) .. '"'
  end
  return "{" .. table.concat(parts, ",") .. "}"
end


-- A family collects its samples, so that they come out together after HELP and TYPE.
local function family(out, name, kind, help)
  local f = { name = name, kind = kind, help = help, samples = {} }
  out.families[#out.families + 1] = f
  out.by_name[name] = f
  return f
end


local function sample(f, suffix, lbls, value)
  f.samples[#f.samples + 1] = f.name .. (suffix or "") .. labels(lbls) .. " " .. num(value)
end


local function text(out)
  local lines = {}
  for _, f in ipairs(out.families) do
    if #f.samples > 0 then
      lines[#lines + 1] = "# HELP " .. f.name .. " " .. f.help
      lines[#lines + 1] = "# TYPE " .. f.name .. " " .. f.kind
      for _, s in ipairs(f.samples) do
        lines[#lines + 1] = s
      end
    end
  end
  return table.concat(lines, "\n") .. "\n"
end


-- ---- gathering ----

local function worker_series(out, items, bounds)
  local F = out.by_name
  for _, item in ipairs(items) do
    local w, st = item.worker, item.stats
    local base = { { "worker", w.id }, { "generation", w.generation } }
    local function with(k, v)
      return { base[1], base[2], { k, v } }
    end
    sample(F.luacluster_worker_info, nil, { base[1], base[2], { "pid", w.pid }, { "state", w.state } }, 1)
    sample(F.luacluster_worker_up, nil, base, item.fresh and 1 or 0)
    sample(F.luacluster_worker_resident_memory_bytes, nil, base, core.pid_rss(w.pid) or 0)
    sample(F.luacluster_worker_start_time_seconds, nil, base,
      math.floor((out.time - (out.now - w._started) / 1000) * 1000) / 1000)
    local http = st.http or {}
    local status = http.status or {}
    for class = 1, 5 do
      sample(F.luacluster_http_requests_total, nil, with("code", class .. "xx"), status[class] or 0)
    end
    if (status[0] or 0) > 0 then
      sample(F.luacluster_http_requests_total, nil, with("code", "other"), status[0])
    end
    sample(F.luacluster_http_open_connections, nil, base, http.connections or st.connections or 0)
    sample(F.luacluster_http_connections_accepted_total, nil, base, http.connections_total or 0)
    sample(F.luacluster_http_response_body_bytes_total, nil, base, http.body_bytes or 0)
    local buckets, cum = http.buckets or {}, 0
    for i, bound in ipairs(bounds) do
      cum = cum + (buckets[i] or 0)
      sample(F.luacluster_http_request_duration_seconds, "_bucket", with("le", num(bound)), cum)
    end
    cum = cum + (buckets[#bounds + 1] or 0)
    sample(F.luacluster_http_request_duration_seconds, "_bucket", with("le", "+Inf"), cum)
    sample(F.luacluster_http_request_duration_seconds, "_sum", base, http.duration_sum or 0)
    sample(F.luacluster_http_request_duration_seconds, "_count", base, cum)
    sample(F.luacluster_websockets_open, nil, base, http.websockets or 0)
    sample(F.luacluster_websocket_messages_received_total, nil, base, http.websocket_messages_in or 0)
    sample(F.luacluster_websocket_messages_sent_total, nil, base, http.websocket_messages_out or 0)
    local ipc = st.ipc or {}
    sample(F.luacluster_worker_messages_sent_total, nil, base, ipc.messages_out or 0)
    sample(F.luacluster_worker_messages_received_total, nil, base, ipc.messages_in or 0)
    sample(F.luacluster_worker_ipc_bytes_sent_total, nil, base, ipc.bytes_out or 0)
    sample(F.luacluster_worker_ipc_bytes_received_total, nil, base, ipc.bytes_in or 0)
    local al = st.access_log or {}
    sample(F.luacluster_access_log_lines_total, nil, base, al.lines or 0)
    sample(F.luacluster_access_log_dropped_lines_total, nil, base, al.dropped or 0)
    local ps = st.pubsub or {}
    sample(F.luacluster_worker_pubsub_deliveries_total, nil, base, ps.delivered or 0)
    sample(F.luacluster_worker_pubsub_slow_closed_total, nil, base, ps.slow_closed or 0)
  end
end


-- The whole exposition (waits for the workers' answers, up to a second).
function _M.render()
  local items = stats.collect()
  local out = { families = {}, by_name = {}, time = core.time(), now = core.now() }
  -- cluster
  family(out, "luacluster_info", "gauge", "The master: luacluster's version, the cluster mode and the master's pid.")
  family(out, "luacluster_generation", "gauge", "The generation of the code now serving (1, then +1 per reload).")
  family(out, "luacluster_start_time_seconds", "gauge", "When the master started, in seconds since the epoch.")
  family(out, "luacluster_reloads_total", "counter", "Reloads, by result: done or refused.")
  family(out, "luacluster_workers", "gauge", "Worker processes by state.")
  family(out, "luacluster_worker_restarts_total", "counter", "Restarts of a crashed worker, per worker slot.")
  family(out, "luacluster_master_resident_memory_bytes", "gauge", "The master's resident set size.")
  family(out, "luacluster_tls_ticket_keys", "gauge", "TLS session ticket keys in the cluster's ring (the newest encrypts, all decrypt).")
  family(out, "luacluster_tls_ticket_key_age_seconds", "gauge", "Age of the newest and of the oldest TLS session ticket key.")
  -- workers
  family(out, "luacluster_worker_info", "gauge", "A worker process: its pid and state.")
  family(out, "luacluster_worker_up", "gauge", "1 when the worker answered this scrape, 0 when its counters are from an earlier one.")
  family(out, "luacluster_worker_resident_memory_bytes", "gauge", "A worker's resident set size.")
  family(out, "luacluster_worker_start_time_seconds", "gauge", "When the worker started, in seconds since the epoch.")
  family(out, "luacluster_http_requests_total", "counter", "HTTP responses sent, by status class.")
  family(out, "luacluster_http_open_connections", "gauge", "Open HTTP connections.")
  family(out, "luacluster_http_connections_accepted_total", "counter", "HTTP connections accepted.")
  family(out, "luacluster_http_response_body_bytes_total", "counter", "Bytes of HTTP response bodies sent.")
  family(out, "luacluster_http_request_duration_seconds", "histogram",
    "Time from a request's first byte to the end of its response.")
  family(out, "luacluster_websockets_open", "gauge", "Open WebSockets.")
  family(out, "luacluster_websocket_messages_received_total", "counter", "WebSocket messages received from clients.")
  family(out, "luacluster_websocket_messages_sent_total", "counter", "WebSocket messages sent to clients (each published copy counts).")
  family(out, "luacluster_worker_messages_sent_total", "counter", "Messages, requests and replies the worker sent over its channel.")
  family(out, "luacluster_worker_messages_received_total", "counter", "Messages, requests and replies the worker received over its channel.")
  family(out, "luacluster_worker_ipc_bytes_sent_total", "counter", "Bytes the worker wrote to its channel to the master, runtime frames included.")
  family(out, "luacluster_worker_ipc_bytes_received_total", "counter", "Bytes the worker read from its channel to the master, runtime frames included.")
  family(out, "luacluster_access_log_lines_total", "counter", "Access log lines written.")
  family(out, "luacluster_access_log_dropped_lines_total", "counter", "Access log lines dropped because the disk did not keep up.")
  family(out, "luacluster_worker_pubsub_deliveries_total", "counter", "Publishes queued on the worker's subscribed WebSockets (one per socket).")
  family(out, "luacluster_worker_pubsub_slow_closed_total", "counter", "Subscribed WebSockets closed with 1008 for a backlog over 4 MiB.")
  family(out, "luacluster_pubsub_publishes_total", "counter", "Publishes the master routed (from the master, the workers and other hosts).")
  family(out, "luacluster_pubsub_forwarded_total", "counter", "Publish frames the master forwarded to workers with subscribers.")
  family(out, "luacluster_pubsub_dropped_total", "counter", "Publish frames not given to a worker with over 128 MiB of them unread.")
  -- shared dictionaries (label dict), read without their locks
  family(out, "luacluster_shared_dict_capacity_bytes", "gauge", "A shared dictionary's size.")
  family(out, "luacluster_shared_dict_used_bytes", "gauge", "Bytes of a shared dictionary's memory in use.")
  family(out, "luacluster_shared_dict_entries", "gauge", "Keys in a shared dictionary, expired ones not yet removed included.")
  family(out, "luacluster_shared_dict_evictions_total", "counter", "Live entries evicted to make room (forcible stores).")

  local F = out.by_name
  local mode = master.config().mode or runtime.options.mode
  sample(F.luacluster_info, nil, { { "version", core.version }, { "mode", mode }, { "pid", core.pid() } }, 1)
  sample(F.luacluster_generation, nil, nil, master.generation())
  sample(F.luacluster_start_time_seconds, nil, nil, math.floor(started_at * 1000) / 1000)
  sample(F.luacluster_reloads_total, nil, { { "result", "done" } }, reload.counts.done)
  sample(F.luacluster_reloads_total, nil, { { "result", "refused" } }, reload.counts.refused)
  local by_state, slots = {}, {}
  for _, item in ipairs(items) do
    local s = item.worker.state
    by_state[s] = (by_state[s] or 0) + 1
    slots[item.worker.id] = true
  end
  for _, s in ipairs(STATES) do
    sample(F.luacluster_workers, nil, { { "state", s } }, by_state[s] or 0)
  end
  for _, id in ipairs(tables.sorted_keys(slots)) do
    sample(F.luacluster_worker_restarts_total, nil, { { "worker", id } }, master.restarts(id))
  end
  sample(F.luacluster_master_resident_memory_bytes, nil, nil, core.rss() or 0)
  local tk = tls_tickets.info() -- the count and ages, never a key
  sample(F.luacluster_tls_ticket_keys, nil, nil, tk.keys)
  sample(F.luacluster_tls_ticket_key_age_seconds, nil, { { "key", "newest" } }, math.floor(tk.newest_age))
  sample(F.luacluster_tls_ticket_key_age_seconds, nil, { { "key", "oldest" } }, math.floor(tk.oldest_age))
  local ps = core.ps_stats()
  sample(F.luacluster_pubsub_publishes_total, nil, nil, ps.published)
  sample(F.luacluster_pubsub_forwarded_total, nil, nil, ps.forwarded)
  sample(F.luacluster_pubsub_dropped_total, nil, nil, ps.dropped)
  pubsub_redis.series(out, family, sample) -- cluster.setup{ pubsub = { redis = } }: the link
  worker_series(out, items, core.http_stats().bounds)
  jobs.series(out, family, sample) -- cluster.job: runs, failures, skipped, duration per job
  for _, d in ipairs(shdict.stats()) do
    local l = { { "dict", d.name } }
    sample(F.luacluster_shared_dict_capacity_bytes, nil, l, d.capacity)
    sample(F.luacluster_shared_dict_used_bytes, nil, l, d.used)
    sample(F.luacluster_shared_dict_entries, nil, l, d.entries)
    sample(F.luacluster_shared_dict_evictions_total, nil, l, d.evictions)
  end
  return text(out)
end


-- ---- the listener (in the master, outside the app's servers: a reload keeps it) ----

local listener -- { server =, key = "host:port", tcp = }
local adopted  -- a binary upgrade's new master: the old master's listener { key =, tcp = }, until apply


local function close_listener()
  if listener then
    listener.server:close()
    listener = nil
  end
end


-- Serves GET /metrics on cfg (an address as parse_address takes), or stops serving when it
-- is nil or false. -> true | nil, err ("listen EADDRINUSE 127.0.0.1:9100")
function _M.apply(v)
  local inherited = adopted -- (the old master's socket, if this master was started by an upgrade)
  adopted = nil
  local addr, err = _M.parse_address(v)
  local key = addr and addr.host .. ":" .. addr.port
  if inherited and inherited.key ~= key then
    inherited.tcp:close() -- the new code serves the metrics elsewhere, or not at all
    inherited = nil
  end
  if not addr then
    close_listener()
    return err == nil and true or nil, err
  end
  if listener and listener.key == key then
    return true
  end
  close_listener()
  local tcp, lerr
  if inherited then
    tcp = inherited.tcp -- the same socket the old master listened on (it still holds the port)
  else
    tcp, lerr = core.tcp_listen(addr.host, addr.port)
  end
  if not tcp then
    return nil, lerr
  end
  local http_module = require("luacluster.http") -- lazy: only a cluster.setup{metrics=} listener needs it
  local server = http_module.create_server(function(req)
    if req.path ~= "/metrics" then
      return 404, { ["Content-Type"] = "text/plain" }, "not found: the metrics are at /metrics\n"
    end
    if req.method ~= "GET" and req.method ~= "HEAD" then
      return 405, { ["Allow"] = "GET, HEAD", ["Content-Type"] = "text/plain" }, "method not allowed\n"
    end
    return 200, { ["Content-Type"] = CONTENT_TYPE, ["Cache-Control"] = "no-store" }, _M.render()
  end)
  runtime.drain_hooks[server] = nil -- not one of the app's servers
  local ok, terr = server:_take_listener(tcp)
  if not ok then
    tcp:close()
    return nil, "listen " .. tostring(terr)
  end
  listener = { server = server, key = key, tcp = tcp }
  log.info("metrics: serving http://" .. (addr.host:find(":") and "[" .. addr.host .. "]" or addr.host) .. ":" .. addr.port .. "/metrics")
  return true
end


_M.CONTENT_TYPE = CONTENT_TYPE


-- A binary upgrade (lib/crossing.lua, registered by master/upgrade.lua): the listener's socket
-- crosses (SCM_RIGHTS), since the old master holds the port until it exits and the new one
-- could not bind it; the new master's apply() serves on it if its code keeps the address.
-- Both masters answer GET /metrics until the old one has exited.
function _M.export_listener()
  if not listener then
    return nil
  end
  return { key = listener.key }, { socket = listener.tcp }
end


function _M.import_listener(v, handles)
  if type(v) == "table" and type(v.key) == "string" and handles.socket then
    adopted = { key = v.key, tcp = handles.socket }
  elseif handles.socket then
    handles.socket:close()
  end
end


-- plugs the metrics option into the master's cluster.setup (master/plugins.lua)
function _M.attach(m)
  m.add_hook("setup_check", function(opts)
    if opts.metrics ~= nil then
      local ok, err = _M.parse_address(opts.metrics)
      if ok == nil then -- false is a valid answer: no listener
        return err
      end
    end
  end)
end

return {
  parse_address = _M.parse_address,
  render = _M.render,
  apply = _M.apply,
  CONTENT_TYPE = _M.CONTENT_TYPE,
  attach = _M.attach,
  export_listener = _M.export_listener,
  import_listener = _M.import_listener,
}
