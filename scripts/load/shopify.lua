-- wrk script: POSTs one correctly signed Shopify delivery, read from files prepared by
-- scripts/load.sh (body.json and signature.txt in the folder given as WRK_DATA).
local dir = os.getenv("WRK_DATA")
local function slurp(name)
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local body = slurp("body.json")
local signature = slurp("signature.txt"):gsub("%s+$", "")
local counter = 0
local next_thread = 0

setup = function(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Shop-Domain"] = "acme-demo.myshopify.com",
    ["X-Shopify-Topic"] = "checkouts/create",
    ["X-Shopify-Webhook-Id"] = "load-" .. tostring(thread_id) .. "-" .. counter,
    ["X-Shopify-Hmac-Sha256"] = signature,
  }, body)
end

done = function(summary, latency)
  io.write(string.format("wrk: %d requests in %.1f s: %.0f requests/s; p50 %.2f ms, p99 %.2f ms; non-2xx %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status))
end
