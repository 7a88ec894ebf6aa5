-- POST /upload with a 1 MiB body (wrk adds the Content-Length). Built once per
-- wrk thread at load time, then reused for every request.
wrk.method = "POST"
wrk.path = "/upload"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("a", 1024 * 1024)
