-- SPDX-License-Identifier: Apache-2.0
-- wrk script of bench/s3.sh: each request a thread sends goes to the next line of a file of
-- presigned path?query strings, so the load spreads over many objects instead of one hot key.
-- Arguments (after wrk's `--`): PATHS_FILE [METHOD [BODY_FILE]]. At the end it prints one line
--   bench-s3 requests=N duration_us=N bytes=N p99_us=N errors=N
-- that bench/s3.sh parses (errors counts non-2xx answers, connect/read/write errors and
-- timeouts together; any of them makes the run meaningless).

local counter = 0

-- Runs in the main Lua state once per thread: give each thread its own starting offset so the
-- threads do not march over the same keys in lockstep.
function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
end

local paths = {}
local reqs = nil
local method = "GET"
local body = nil
local idx = 0

function init(args)
   local file = args[1] or error("s3.lua: no paths file given")
   for line in io.lines(file) do
      if line ~= "" then
         paths[#paths + 1] = line
      end
   end
   if #paths == 0 then
      error("s3.lua: " .. file .. " lists no paths")
   end
   method = args[2] or "GET"
   if args[3] then
      local f = assert(io.open(args[3], "rb"))
      body = f:read("*a")
      f:close()
   end
   idx = (tid * 97) % #paths
   -- Small requests are formatted once up front; a 1 MiB body per key would cost hundreds of
   -- megabytes per thread, so those are formatted as they go.
   if not body or #body * #paths <= 16 * 1024 * 1024 then
      reqs = {}
      for i, p in ipairs(paths) do
         reqs[i] = wrk.format(method, p, nil, body)
      end
   end
end

function request()
   idx = idx % #paths + 1
   if reqs then
      return reqs[idx]
   end
   return wrk.format(method, paths[idx], nil, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("bench-s3 requests=%d duration_us=%d bytes=%d p99_us=%d errors=%d\n",
                          summary.requests, summary.duration, summary.bytes,
                          latency:percentile(99),
                          e.connect + e.read + e.write + e.status + e.timeout))
end
