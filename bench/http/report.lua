-- Shared by the wrk scripts: one machine-readable line at the end of a run, which run.sh reads.
-- errors: answers that were not 2xx/3xx, and socket errors and timeouts.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
                         "non2xx=%d socket_errors=%d\n",
                         summary.requests, summary.duration, latency:percentile(50),
                         latency:percentile(99), latency.max, e.status,
                         e.connect + e.read + e.write + e.timeout))
end
