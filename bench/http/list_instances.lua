-- wrk script: authenticated GET /instances, the newest 100 (the first page, as a poller asks).
wrk.method = "GET"
wrk.path = "/instances?limit=100"
wrk.headers["Authorization"] = "token " .. os.getenv("CLOUDBRAIN_TOKEN")
dofile(os.getenv("CLOUDBRAIN_BENCH_DIR") .. "/report.lua")
