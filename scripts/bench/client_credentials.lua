-- wrk script: form posts with HTTP Basic client authentication — client
-- credentials grants, or with BODY="token=…" against /oauth2/introspect
-- an introspection. BASIC is base64(client_id:client_secret); CONC the
-- connection count; SCENARIO the label of the JSON line.
wrk.method = "POST"
wrk.body = os.getenv("BODY") or "grant_type=client_credentials&scope=profile"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('{"scenario":"%s","concurrency":%s,"ok":%d,"errors":%d,"per_second":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"tool":"wrk"}\n',
    os.getenv("SCENARIO") or "client_credentials", os.getenv("CONC"), summary.requests - bad, bad, (summary.requests - bad) / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
