-- POST /api/tokens/user with the body of issue 6, identical for streamgate and
-- the Express reference. Setting wrk.method/body/headers (instead of a
-- request() function) lets wrk build the request once and reuse it, so the
-- client spends its time sending, not formatting.
wrk.method = "POST"
wrk.path = "/api/tokens/user"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"userId":"john_doe","validityInSeconds":7200,"callId":"meeting-123","callType":"default"}'
