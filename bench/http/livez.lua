-- wrk script: GET /livez, the server's own floor (no token, no database).
wrk.method = "GET"
wrk.path = "/livez"
dofile(os.getenv("CLOUDBRAIN_BENCH_DIR") .. "/report.lua")
