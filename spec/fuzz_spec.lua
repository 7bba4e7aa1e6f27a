-- The fuzz targets of runtime/fuzz/: the seed corpus (spec/fuzz/corpus) replayed through the
-- real IPC channel + decoder and the real HTTP connection layer by the replay drivers every
-- build has (with the sanitizers in .ci/run's build-asan run), and, where clang is installed,
-- a few seconds of libFuzzer on each target (spec/fuzz/run.sh; the long runs are manual).
local H = require("helper")

local function has_clang()
  local _, rc = H.sh("command -v clang")
  return rc == 0
end

-- a fuzz run is its own program with its own sanitizer runtime: none of the suite's
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS "

describe("fuzz targets", function()
  for _, target in ipairs({ "ipc", "http", "http_client", "ws" }) do
    it("replay the " .. target .. " corpus without a crash", function()
      local bin = H.build_dir .. "/fuzz/fuzz_" .. target .. "_replay"
      local corpus = H.root .. "/spec/fuzz/corpus/" .. target
      local out, rc = H.sh(bin .. " " .. corpus .. " 2>/dev/null")
      assert.equals(0, rc, out)
      local n = tonumber(out:match("replayed (%d+) inputs"))
      assert(n and n >= 20, out)
    end)

    if target == "ipc" then
      -- headers near 4 GiB under the largest frame limit (mode bit 6): before sizes were size_t,
      -- the first two aborted the replay (a wrapped size) and the routed one overflowed the heap
      it("replays the ipc seeds that run under the largest frame limit one by one", function()
        local bin = H.build_dir .. "/fuzz/fuzz_ipc_replay"
        for _, name in ipairs({ "huge_len", "huge_len_split", "huge_len_routed", "huge_len_bcast", "over_lua_string" }) do
          local path = H.root .. "/spec/fuzz/corpus/ipc/" .. name
          local f = assert(io.open(path, "rb"), path)
          local mode = f:read(1):byte()
          f:close()
          assert.equal(64, bit.band(mode, 64), name .. " does not run under the largest limit")
          local out, rc = H.sh(bin .. " " .. path .. " 2>&1")
          assert.equal(0, rc, name .. ": " .. out)
        end
      end)
    end

    it("fuzz " .. target .. " for a few seconds (libFuzzer)", function()
      if not has_clang() then
        pending("clang is not installed (vendor/install-deps.sh --fuzz): the corpus replay covers the seeds")
        return
      end
      local out, rc = H.sh("cd " .. H.root .. " && " .. CLEAN_ENV .. "spec/fuzz/run.sh " .. target .. " 4")
      assert.equals(0, rc, out)
      local execs = tonumber(out:match("#(%d+)%s+DONE"))
      assert(execs and execs > 100, out)
    end)
  end
end)
