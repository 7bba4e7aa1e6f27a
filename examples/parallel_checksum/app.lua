-- A parallel checksum of files: the master makes a list of files and hands them out to the
-- workers with luacluster.pool (the scheduling policy picks the worker, at most two files in
-- flight per worker); each worker reads its file and computes a CRC-32 (the one zlib, gzip and
-- PNG use); the master prints the results in the order of the list, as `crc32 size path`,
-- then stops. A file that cannot be read shows as an error line, not a failed run.
-- Run: build/luacluster -w 4 examples/parallel_checksum/app.lua FILE_OR_FOLDER...
--      (with no argument: the files of luacluster's Lua library)
local cluster = require("luacluster.cluster")
local pool = require("luacluster.pool")
local process = require("luacluster.process")

if cluster.is_worker then
  local bit = require("bit")
  local band, bxor, rshift = bit.band, bit.bxor, bit.rshift
  local byte = string.byte

  local crc_table = {}
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      c = band(c, 1) == 1 and bxor(0xEDB88320, rshift(c, 1)) or rshift(c, 1)
    end
    crc_table[i] = c
  end

  local function crc32(f)
    local crc, size = 0xFFFFFFFF, 0
    while true do
      local chunk = f:read(65536)
      if not chunk then
        break
      end
      size = size + #chunk
      for i = 1, #chunk do
        crc = bxor(crc_table[band(bxor(crc, byte(chunk, i)), 0xFF)], rshift(crc, 8))
      end
    end
    return bit.tohex(bxor(crc, 0xFFFFFFFF)), size
  end

  pool.handle(function(path)
    local f, err = io.open(path, "rb")
    if not f then
      return { error = err }
    end
    local crc, size = crc32(f)
    f:close()
    return { crc = crc, size = size, worker = cluster.worker.id }
  end)
end

if cluster.is_master then
  local function list(path, out)
    local p = io.popen("find '" .. path:gsub("'", "'\\''") .. "' -type f 2>/dev/null | sort")
    local any = false
    for line in p:lines() do
      out[#out + 1] = line
      any = true
    end
    p:close()
    if not any then
      out[#out + 1] = path -- not there: its error line says so
    end
  end

  local files = {}
  for i = 1, #process.argv do
    list(process.argv[i], files)
  end
  if #files == 0 then
    list(require("luacluster.runtime").libdir or ".", files)
  end

  local started = false
  cluster.on("online", function()
    if started then
      return
    end
    started = true
    local results, err = pool.map(files, { per_worker = 2 })
    if not results then
      io.stderr:write("checksum failed: ", err, "\n")
      cluster.stop(1)
      return
    end
    local bytes, by_worker = 0, {}
    for i, path in ipairs(files) do
      local r = results[i]
      if r.error then
        print(string.format("error    %s", r.error))
      else
        print(string.format("%s %10d %s", r.crc, r.size, path))
        bytes = bytes + r.size
        by_worker[r.worker] = (by_worker[r.worker] or 0) + 1
      end
    end
    local spread = {}
    for id, n in pairs(by_worker) do
      spread[#spread + 1] = string.format("worker %d: %d", id, n)
    end
    table.sort(spread)
    print(string.format("%d files, %d bytes (%s)", #files, bytes, table.concat(spread, ", ")))
    cluster.stop()
  end)
end
