-- wrk script: POST /instances with the seed's body; the token comes from the environment.
-- wrk itself reports any non-2xx answers ("Non-2xx or 3xx responses").
wrk.method = "POST"
wrk.path = "/instances"
wrk.body = '{"provider":"gce","image":"image-2016-01-01","instance_type":"standard","public_ssh_key":"ssh-rsa AAAA"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "token " .. os.getenv("CLOUDBRAIN_TOKEN")
