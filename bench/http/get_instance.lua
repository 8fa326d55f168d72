-- wrk script: authenticated GET /instances/:id of one existing instance.
wrk.method = "GET"
wrk.path = "/instances/" .. os.getenv("CLOUDBRAIN_INSTANCE")
wrk.headers["Authorization"] = "token " .. os.getenv("CLOUDBRAIN_TOKEN")
