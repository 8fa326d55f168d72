-- wrk script: authenticated GET /instances/:id, cycling through the ids listed one a line in
-- $CLOUDBRAIN_IDS (each connection starts at another place). The requests are formatted once,
-- in init, so that wrk spends as little per request here as for /livez.
local ids = {}
for line in io.lines(os.getenv("CLOUDBRAIN_IDS")) do ids[#ids + 1] = line end
local requests = {}
local next_request = 1

function init(args)
  local headers = {Authorization = "token " .. os.getenv("CLOUDBRAIN_TOKEN")}
  for k, id in ipairs(ids) do
    requests[k] = wrk.format("GET", "/instances/" .. id, headers)
  end
  next_request = math.random(#requests)
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

dofile(os.getenv("CLOUDBRAIN_BENCH_DIR") .. "/report.lua")
