-- wrk script of bench/run: rotates over the request paths in the file
-- given as the first argument (one path a line: repository/arch pairs and
-- client addresses via ip=), sends dnf's headers, and prints one
-- machine-readable RESULT line at the end.
--
--   wrk -t1 -c100 -d10s --latency -s bench/rotate.lua http://127.0.0.1:PORT -- paths.txt

local paths = {}
local i = 0

init = function(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  f:close()
  wrk.headers["User-Agent"] = "libdnf (Fedora Linux 42; generic; Linux.x86_64)"
  wrk.headers["Accept"] = "*/*"
end

request = function()
  i = i + 1
  if i > #paths then
    i = 1
  end
  return wrk.format("GET", paths[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
