-- The master's listening sockets, in every mode, and the scheduling of dispatched
-- connections. A worker's server:listen() arrives here as a "listen" control message:
--   dispatch   one socket per address; the master accepts and hands each connection to the
--              worker the scheduling policy picks (runtime/tcp.c does the accept and send)
--   shared     one socket per address, passed to every worker; workers accept
--   reuseport  one SO_REUSEPORT socket per address and worker slot, passed to that slot's
--              worker, so a replacement inherits the same socket and its accept queue
--   ports      worker slot i gets its own socket on port + i - 1 (for a proxy in front)
-- The table crosses a binary upgrade (lib/crossing.lua, master/upgrade.lua): the old master
-- exports each listener's address and socket, the new master imports them before its app
-- runs, and its workers' listens find them there. In dispatch mode an imported socket is held
-- (the new master does not accept on it) until take_over(), once the old master has stopped
-- accepting (stop_accepting()).
local core = require("luacluster.core")
local cluster = require("luacluster.cluster")
local listen = require("luacluster.serve.listen")
local log = require("luacluster.lib.log")
local master = require("luacluster.master.core")
local runtime = require("luacluster.lib.runtime")
local sched = require("luacluster.sched.load")

local _M = {}

local listeners = {}   -- "host:port" (or "host:port#slot") -> listener
-- worker -> { key -> listener }: servers it closed (unlisten), whose connections not yet
-- acknowledged are still its own until it is gone (requeue)
local unlistened = setmetatable({}, { __mode = "k" })
local next_key = 0
local holding = false  -- a new master before the upgrade's switch: imported sockets are not accepted on
local round_robin = require("luacluster.sched.round_robin")
local count_connections = master.count_connections


local function report_error(err)
  if not cluster:emit("error", err) then
    log.error(err)
  end
end


-- the policy named by cluster.setup{scheduler=}: {wants_address, pick(workers, conn)}
local function make_policy()
  local s = master.config().scheduler or "round_robin"
  local mod, err = sched.load(s)
  if not mod then
    error("cluster.setup: " .. err, 0)
  elseif type(mod) == "function" then
    return { wants_address = true, pick = mod, custom = true }
  end
  return { wants_address = mod.wants_address, pick = mod.new(), name = s }
end


local function rebuild_ready(l)
  local list = {}
  for _, w in pairs(l.ready) do
    list[#list + 1] = w
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  l.ready_list = list
end


-- the dispatcher's picker (runtime/tcp.c, dispatch_one): picker(prev, how, ip, port) -> worker id.
-- prev is the worker it named last for this connection, and how says what became of it:
-- "gone" (its channel could not take the connection: uncounted and no longer ready), "busy"
-- (too many of its connections not acknowledged yet: uncounted, and skipped for this
-- connection); "returned" only says that a connection sent to prev came back (uncounted),
-- and then the third argument is the serial of the channel it went by: the worker that now
-- has id prev may be a reload's new one, which was not counted for it
local function make_picker(l)
  local fallback = round_robin.new()
  local skip -- workers skipped for the current connection (busy)
  return function(prev, how, ip, port)
    if prev then
      local pw = l.ready[prev]
      if pw and how == "returned" and pw._serial ~= ip then
        pw = nil
      end
      if pw then
        count_connections(pw, -1)
        if how == "gone" then
          l.ready[prev] = nil
          rebuild_ready(l)
        elseif how == "busy" then
          skip = skip or {}
          skip[pw] = true
        end
      end
      if how == "returned" then
        return nil
      end
    else
      skip = nil
    end
    local workers = l.ready_list
    if skip then
      local left = {}
      for _, w in ipairs(workers) do
        if not skip[w] then
          left[#left + 1] = w
        end
      end
      workers = left
    end
    if #workers == 0 then
      return nil
    end
    local conn
    if l.policy.wants_address then
      conn = { remote_address = ip, remote_port = port, local_port = l.port }
    end
    local ok, w = pcall(l.policy.pick, workers, conn)
    if not ok or type(w) ~= "table" or l.ready[w.id] ~= w or (skip and skip[w]) then
      report_error(ok and ("scheduler returned " .. (type(w) == "table" and ("worker " .. tostring(w.id) .. ", which is not ready") or tostring(w))
        .. "; using round robin") or ("scheduler failed: " .. tostring(w) .. "; using round robin"))
      w = fallback(workers)
    end
    count_connections(w, 1)
    return w.id
  end
end


local function open(host, port, reuseport)
  return core.tcp_listen(host, port, { reuseport = reuseport })
end


local function grant(w, msg, l, address, handle)
  master.listen_granted(w) -- online (if it was not yet) and listening
  master.listens(w)[l.key] = l
  if unlistened[w] then
    unlistened[w][l.key] = nil
  end
  w:_control({ op = "listen_result", seq = msg.seq, key = l.key, address = address,
    report = l.policy and l.policy.name == "least_connections" or nil }, handle)
  master.emit(w, "listening", address)
end


local function listen_op(w, msg)
  local host, port = msg.host, msg.port
  local mode = master.config().mode or runtime.options.mode or "dispatch"
  local function fail(err)
    -- before anything has ever listened, a taken port ends the whole start (see master/core.lua)
    local fatal = master.listen_failed(err)
    w:_control({ op = "listen_result", seq = msg.seq, err = err, fatal = fatal or nil })
  end
  if type(host) ~= "string" or type(port) ~= "number" then
    return fail("listen: bad address")
  end
  if msg.tls_error then -- its certificate did not load (serve/listen.lua): a listen error as a taken port
    master.note_worker_failure(w, msg.tls_error)
    return fail(tostring(msg.tls_error))
  end
  local id_key, slot_port, reuseport = host .. ":" .. port, port, false
  if mode == "ports" then
    slot_port = port + w.id - 1
    id_key = host .. ":" .. slot_port
  elseif mode == "reuseport" then
    id_key = id_key .. "#" .. w.id
    reuseport = true
  end
  local l = port ~= 0 and listeners[id_key]
  if not l then
    local tcp, err, code = open(host, slot_port, reuseport)
    if not tcp then
      if code == "EADDRINUSE" and listen.master_listens(host, slot_port) then
        err = err .. ": the master itself listens on this address (a server started in the master;"
          .. " start servers inside `if cluster.is_worker`)"
      end
      return fail(err)
    end
    local _, actual = tcp:sockname()
    next_key = next_key + 1
    l = { key = next_key, host = host, port = actual, tcp = tcp, mode = mode, ready = {}, ready_list = {},
      addr = host .. ":" .. port, slot = reuseport and w.id or nil }
    if port ~= 0 then
      listeners[id_key] = l
    end
    if mode == "dispatch" then
      local ok, perr = pcall(make_policy)
      if not ok then
        tcp:close()
        l.closed = true
        listeners[id_key] = nil
        return fail(perr)
      end
      l.policy = perr
      local started, serr = tcp:dispatch(l.key, make_picker(l), l.policy.wants_address)
      if not started then
        return fail("listen " .. tostring(serr))
      end
    end
  end
  if mode == "dispatch" and not l.policy then -- imported from the old master (an upgrade)
    local ok, perr = pcall(make_policy)
    if not ok then
      return fail(perr)
    end
    l.policy = perr
    if holding then
      l.held = true -- take_over() starts accepting
    else
      local started, serr = l.tcp:dispatch(l.key, make_picker(l), l.policy.wants_address)
      if not started then
        return fail("listen " .. tostring(serr))
      end
    end
  end
  local address = { address = host, port = l.port }
  if mode == "dispatch" then
    if not w._pending then -- a new generation's worker gets connections once the reload switches
      l.ready[w.id] = w
      rebuild_ready(l)
    end
    grant(w, msg, l, address)
    l.tcp:dispatch_flush()
  else
    grant(w, msg, l, address, l.tcp)
    -- reuseport: the sockets of slots that a reload left without their own worker (see
    -- close_unused) go with this slot to its replacements
    for _, o in pairs(listeners) do
      if o ~= l and o.heir_id == w.id and o.addr == l.addr then
        _M.hand_over(o, w)
      end
    end
  end
end


-- a worker closed a server, is draining or is gone: it gets no more connections
local function forget(w)
  for _, l in pairs(master.listens(w)) do
    if l.ready[w.id] == w then
      l.ready[w.id] = nil
      rebuild_ready(l)
    end
  end
end


-- A worker closed a dispatched server: it no longer serves that address, also for a pending
-- new-generation worker (not ready yet), which the reload's switch must not make ready on it
-- (adopt). Until it is gone its connections not acknowledged yet are still its (requeue).
local function on_unlisten(w, msg)
  local l = master.listens(w)[msg.key]
  if l then
    master.listens(w)[msg.key] = nil
    unlistened[w] = unlistened[w] or {}
    unlistened[w][msg.key] = l
  end
  if l and l.ready[w.id] == w then
    l.ready[w.id] = nil
    rebuild_ready(l)
  end
  if msg.confirm then -- after every connection sent to it on this key (serve/listen.lua, unlisten)
    w:_control({ op = "unlisten_ok", key = msg.key })
  end
end
local function on_closed(w, msg)
  if type(msg.n) == "number" then
    count_connections(w, -msg.n)
  end
end
-- a reload switched to this worker: it takes its slot in every listener it asked for
local function on_adopt(w)
  for _, l in pairs(master.listens(w)) do
    if l.mode == "dispatch" and l.ready and not l.closed then
      l.ready[w.id] = w
      rebuild_ready(l)
      l.tcp:dispatch_flush()
    end
  end
end

-- reuseport: the kernel keeps queueing a share of new connections on a slot's socket whatever
-- became of the slot's worker. When it is gone (killed and not restarted, or waiting out a
-- restart backoff) the socket goes to a live worker listening on the same address, which
-- accepts from it beside its own until the slot has a worker again (that one then takes it
-- too). So does a socket whose heir is the one gone.
local function find_heir(l, gone)
  local best
  for id, w in pairs(master.workers) do
    if w ~= gone and w.state == "listening" and (not best or id < best.id) then
      for _, h in pairs(master.listens(w)) do
        if h ~= l and h.addr == l.addr and h.slot == id then
          best = w
          break
        end
      end
    end
  end
  return best
end

local function adopt_orphans(w)
  if master.is_stopping() then
    return
  end
  for _, l in pairs(listeners) do
    if l.mode == "reuseport" and (l.slot == w.id or l.heir_id == w.id) then
      local own = master.workers[l.slot]
      local served = own and own ~= w and own.state ~= "dead" and master.listens(own)[l.key] == l
      if not served then
        local heir = find_heir(l, w)
        l.heir_id = heir and heir.id or nil
        if heir then
          _M.hand_over(l, heir)
        end
      end
    end
  end
end

-- a worker gone with connections sent to it that it never acknowledged (killed with them still
-- in its channel): they go to other workers, unless it had begun on them (tcp.c closes those).
-- By its channel's serial: a reload's new worker has the same id, and its own connections.
local function requeue_on(w, set)
  for _, l in pairs(set or {}) do
    if l.mode == "dispatch" and not l.closed and w._serial then
      if l.tcp:dispatch_requeue(w._serial) > 0 then
        l.tcp:dispatch_flush()
      end
    end
  end
end

local function requeue(w)
  requeue_on(w, master.listens(w))
  requeue_on(w, unlistened[w]) -- servers it closed, which it may not have acknowledged all of
end

local function on_gone(w)
  forget(w)
  requeue(w)
  adopt_orphans(w)
end


-- A graceful stop closes every listening socket at once (the workers close their copies as
-- they start draining): a new connection is then refused, and a proxy in front moves on to
-- another server, instead of waiting in the accept queue, unanswered, until the master exits.
local function on_stop()
  for id_key, l in pairs(listeners) do
    listeners[id_key] = nil
    l.closed = true
    l.tcp:close()
  end
end


-- plugs this module into the master (master/plugins.lua)
function _M.attach(m)
  m.register_op("listen", listen_op)
  m.register_op("unlisten", on_unlisten)
  m.register_op("closed", on_closed)
  m.add_hook("draining", forget)
  m.add_hook("adopt", on_adopt)
  m.add_hook("gone", on_gone)
  m.add_hook("stop", on_stop)
end


-- the scheduling policy changed (setup or reload): rebuild every dispatching listener's
function _M.reset_policies()
  for _, l in pairs(listeners) do
    if l.mode == "dispatch" and (l.policy or not l.imported) then
      l.policy = make_policy()
      if not l.held then -- (an upgrade's imported socket, before the switch: not accepted on yet)
        l.tcp:dispatch(l.key, make_picker(l), l.policy.wants_address)
      end
    end
  end
end


-- A reuseport socket of another slot, accepted on by worker w as well (its server takes it
-- as one more listening socket).
function _M.hand_over(l, w)
  master.listens(w)[l.key] = l
  w:_control({ op = "extra_listener", host = l.host, port = l.port }, l.tcp)
end


-- After a reload's switch: a listening socket that no worker of the new generation asked
-- for (the new code listens elsewhere, or runs fewer workers in ports mode) is closed, so
-- that the kernel stops queueing connections that no worker would ever accept (the old
-- generation's draining workers keep their own copies until they have drained).
-- In reuseport mode with fewer workers, closing a slot's socket would reset what waits in
-- its accept queue: it goes instead to a new worker that listens on the same address (its
-- heir, which passes it on to its own replacements), so that nothing is lost.
function _M.close_unused(new_workers)
  local used, own = {}, {}
  for _, w in ipairs(new_workers) do
    for _, l in pairs(master.listens(w)) do
      used[l] = true
      if l.slot == nil or l.slot == w.id then
        own[l] = true
      end
    end
  end
  for k, l in pairs(listeners) do
    if own[l] then
      l.heir_id = nil
    elseif not used[l] then
      local heirs = {}
      if l.mode == "reuseport" then
        for _, w in ipairs(new_workers) do
          for _, h in pairs(master.listens(w)) do
            if h.addr == l.addr and h.slot == w.id then
              heirs[#heirs + 1] = w
              break
            end
          end
        end
      end
      if #heirs > 0 then
        table.sort(heirs, function(a, b) return a.id < b.id end)
        local heir = heirs[(l.slot - 1) % #heirs + 1]
        l.heir_id = heir.id
        _M.hand_over(l, heir)
      else
        listeners[k] = nil
        l.closed = true
        l.tcp:close()
      end
    end
  end
end


function _M.listeners()
  return listeners
end


-- ---- a binary upgrade (master/upgrade.lua) ----

-- The old master: what crosses (lib/crossing.lua's export) -> value, sockets
function _M.export()
  local list, sockets = {}, {}
  for id_key, l in pairs(listeners) do
    if not l.closed then
      list[#list + 1] = { id = id_key, host = l.host, port = l.port, mode = l.mode, addr = l.addr, slot = l.slot }
      sockets[id_key] = l.tcp
    end
  end
  return list, sockets
end


-- The new master, before its app runs: the old master's listeners, each with its socket
function _M.import(list, sockets)
  holding = true
  for _, e in ipairs(list or {}) do
    local tcp = sockets and sockets[e.id]
    if tcp then
      next_key = next_key + 1
      listeners[e.id] = { key = next_key, host = e.host, port = e.port, tcp = tcp, mode = e.mode, ready = {},
        ready_list = {}, addr = e.addr, slot = e.slot, imported = true }
    end
  end
end


-- The old master, at the switch: it accepts no more in dispatch mode (the sockets stay open,
-- the connections its dispatch holds still go to its workers). -> how many stopped
function _M.stop_accepting()
  local n = 0
  for _, l in pairs(listeners) do
    if l.mode == "dispatch" and not l.closed then
      local ok, err = l.tcp:accept_stop()
      if not ok then
        log.warn("upgrade: " .. l.addr .. ": " .. tostring(err))
      end
      n = n + 1
    end
  end
  return n
end


-- The old master, when the new one died after it had stopped accepting: it accepts again
function _M.resume_accepting()
  for _, l in pairs(listeners) do
    if l.mode == "dispatch" and not l.closed then
      local ok, err = l.tcp:accept_resume()
      if not ok then
        report_error("upgrade: cannot accept again on " .. l.addr .. ": " .. tostring(err))
      end
    end
  end
end


-- connections the old master's dispatch still holds (queued or not yet acknowledged)
function _M.dispatch_pending()
  local n = 0
  for _, l in pairs(listeners) do
    if l.mode == "dispatch" and not l.closed and l.policy then
      local q, f = l.tcp:dispatch_pending()
      n = n + q + f
    end
  end
  return n
end


-- The new master, at the switch: it accepts on the sockets it held; the imported sockets no
-- worker of its asked for are closed (or handed on, in reuseport mode: close_unused)
function _M.take_over(live)
  holding = false
  for _, l in pairs(listeners) do
    if l.held and not l.closed then
      l.held = nil
      local ok, err = l.tcp:dispatch(l.key, make_picker(l), l.policy.wants_address)
      if not ok then
        report_error("upgrade: cannot accept on " .. l.addr .. ": " .. tostring(err))
      else
        l.tcp:dispatch_flush()
      end
    end
  end
  _M.close_unused(live)
end


return {
  attach = _M.attach,
  reset_policies = _M.reset_policies,
  hand_over = _M.hand_over,
  close_unused = _M.close_unused,
  listeners = _M.listeners,
  export = _M.export,
  import = _M.import,
  stop_accepting = _M.stop_accepting,
  resume_accepting = _M.resume_accepting,
  dispatch_pending = _M.dispatch_pending,
  take_over = _M.take_over,
}
