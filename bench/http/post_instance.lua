-- wrk script: POST /instances with the seed's body; the token comes from the environment.
-- Every answer that is not 2xx is counted as non2xx in the RESULT line.
wrk.method = "POST"
wrk.path = "/instances"
wrk.body = '{"provider":"gce","image":"image-2016-01-01","instance_type":"standard",' ..
           '"public_ssh_key":"ssh-rsa AAAA"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "token " .. os.getenv("CLOUDBRAIN_TOKEN")
dofile(os.getenv("CLOUDBRAIN_BENCH_DIR") .. "/report.lua")
