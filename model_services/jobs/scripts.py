"""Lua scripts: every state change of a job is one atomic step in Redis.

A job's record (a hash) and its stream entries must never disagree, even when
two workers race (a reclaimed job finishing twice) or a replica dies between
two commands. Each script checks the record's status first, so replaying one
is harmless: completing a completed job stores nothing, acknowledging twice is
a no-op. That is what makes at-least-once delivery safe.

Statuses: queued -> running -> completed | failed (dead-lettered), and
queued -> cancelled. A failed attempt below max_attempts goes back to queued
under a new stream entry. Completing or finally failing a job with a callback
also puts its webhook in the outbox, in the same step.
"""

from __future__ import annotations

_COMMON = """
local VIEW = {"id", "status", "model", "version", "attempts", "created_at", "started_at", "finished_at",
  "result", "error"}
local function finish_entry(stream, group, entry)
  redis.call("XACK", stream, group, entry)
  redis.call("XDEL", stream, entry)
end
-- The webhook enters the outbox in the step that finishes the job, so no
-- replica can die between storing a result and owing its webhook. The job is
-- copied as it is now: every attempt sends the same body, whatever happens to
-- the record later.
local function enqueue_webhook(job, outbox, hook, event, now, max_age_s)
  local url = redis.call("HGET", job, "callback_url")
  if not url or url == "" then return end
  local values = redis.call("HMGET", job, unpack(VIEW))
  local view = {}
  for i, name in ipairs(VIEW) do
    if values[i] then view[name] = values[i] end
  end
  local expires = tonumber(now) + tonumber(max_age_s)
  redis.call("DEL", hook)
  redis.call("HSET", hook, "job", values[1], "url", url, "event", event, "record", cjson.encode(view),
    "at", now, "expires_at", string.format("%.3f", expires), "attempts", 0)
  -- Outlives its last possible attempt; a leftover never stays for good.
  redis.call("PEXPIRE", hook, string.format("%.0f", (tonumber(max_age_s) + 3600) * 1000))
  redis.call("ZADD", outbox, now, values[1])
end
-- Exact trimming (no "~"): dead letters are rare, so trimming one entry per
-- new one costs nothing, and the bounds then hold exactly.
local function trim_dead(dead, now, max_age_s)
  redis.call("XTRIM", dead, "MINID", string.format("%.0f", (tonumber(now) - tonumber(max_age_s)) * 1000))
end
local function dead_letter(job, dead, stats, outbox, hook, now, err, ttl_ms, hook_max_age_s, max_len, max_age_s)
  redis.call("HSET", job, "status", "failed", "error", err, "finished_at", now)
  local f = redis.call("HMGET", job, "id", "version", "attempts", "text", "callback_url", "created_at")
  redis.call("XADD", dead, "MAXLEN", max_len, "*", "job", f[1] or "", "version", f[2] or "", "attempts", f[3] or "0",
    "error", err, "failed_at", now, "text", f[4] or "", "callback_url", f[5] or "",
    "created_at", f[6] or now)
  trim_dead(dead, now, max_age_s)
  redis.call("PEXPIRE", job, ttl_ms)
  redis.call("HINCRBY", stats, "dead_lettered", 1)
  enqueue_webhook(job, outbox, hook, "job.failed", now, hook_max_age_s)
end
"""

# KEYS: job, stream, idempotency, index. ARGV: id, max_depth, record_ttl_ms,
# use_idempotency ("1"/"0"), index member, then field/value pairs.
SUBMIT = """
if ARGV[4] == "1" then
  local existing = redis.call("GET", KEYS[3])
  if existing then return {"existing", existing} end
end
local depth = redis.call("XLEN", KEYS[2])
if depth >= tonumber(ARGV[2]) then return {"full", tostring(depth)} end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
local entry = redis.call("XADD", KEYS[2], "*", "job", ARGV[1])
redis.call("HSET", KEYS[1], "entry", entry)
redis.call("PEXPIRE", KEYS[1], ARGV[3])
if ARGV[4] == "1" then redis.call("SET", KEYS[3], ARGV[1], "PX", ARGV[3]) end
redis.call("SADD", KEYS[4], ARGV[5])
return {"created", ARGV[1]}
"""

# KEYS: job, stream, dead, stats, outbox, hook. ARGV: entry, group, worker, now,
# max_attempts, timeout_s, ttl_ms, webhook_max_age_s, dead_max_len, dead_max_age_s.
# -> {"run", text, queued_at, attempts, reclaimed} | {"skip", why} | {"dead", error}
START = (
    _COMMON
    + """
local status = redis.call("HGET", KEYS[1], "status")
if not status then
  finish_entry(KEYS[2], ARGV[2], ARGV[1])
  return {"skip", "record expired"}
end
if redis.call("HGET", KEYS[1], "entry") ~= ARGV[1] then
  finish_entry(KEYS[2], ARGV[2], ARGV[1])
  return {"skip", "stale entry"}
end
if status ~= "queued" and status ~= "running" then
  finish_entry(KEYS[2], ARGV[2], ARGV[1])
  return {"skip", status}
end
local attempts = tonumber(redis.call("HGET", KEYS[1], "attempts") or "0")
local queued_at = tonumber(redis.call("HGET", KEYS[1], "queued_at"))
local err = nil
if attempts >= tonumber(ARGV[5]) then
  err = cjson.encode({code = "worker_lost", error = "gave up after " .. attempts ..
    " attempts: the worker running it stopped each time"})
elseif tonumber(ARGV[4]) - queued_at > tonumber(ARGV[6]) then
  err = cjson.encode({code = "job_timeout", error = "job not finished within " .. ARGV[6] .. " s"})
end
if err then
  finish_entry(KEYS[2], ARGV[2], ARGV[1])
  dead_letter(KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[4], err, ARGV[7], ARGV[8], ARGV[9], ARGV[10])
  return {"dead", err}
end
local reclaimed = "0"
if status == "running" then
  reclaimed = "1"
  redis.call("HINCRBY", KEYS[4], "reclaimed", 1)
end
redis.call("HSET", KEYS[1], "status", "running", "started_at", ARGV[4], "worker", ARGV[3],
  "attempts", attempts + 1)
return {"run", redis.call("HGET", KEYS[1], "text"), tostring(queued_at), tostring(attempts + 1), reclaimed}
"""
)

# KEYS: job, stream, stats, outbox, hook. ARGV: entry, group, now, result_json,
# ttl_ms, processing_s, webhook_max_age_s. -> 1 stored, 0 already finished (a
# duplicate delivery: no second webhook either).
COMPLETE = (
    _COMMON
    + """
local status = redis.call("HGET", KEYS[1], "status")
local stored = 0
if status == "queued" or status == "running" then
  redis.call("HSET", KEYS[1], "status", "completed", "result", ARGV[4], "finished_at", ARGV[3])
  redis.call("HDEL", KEYS[1], "error")
  redis.call("PEXPIRE", KEYS[1], ARGV[5])
  redis.call("HINCRBY", KEYS[3], "completed", 1)
  redis.call("HINCRBYFLOAT", KEYS[3], "processing_seconds", ARGV[6])
  enqueue_webhook(KEYS[1], KEYS[4], KEYS[5], "job.completed", ARGV[3], ARGV[7])
  stored = 1
end
finish_entry(KEYS[2], ARGV[2], ARGV[1])
return stored
"""
)

# KEYS: job, stream, dead, stats, outbox, hook. ARGV: entry, group, now,
# error_json, max_attempts, ttl_ms, webhook_max_age_s, dead_max_len,
# dead_max_age_s. -> "retry" | "dead" | "done"
FAIL = (
    _COMMON
    + """
local status = redis.call("HGET", KEYS[1], "status")
finish_entry(KEYS[2], ARGV[2], ARGV[1])
if status ~= "queued" and status ~= "running" then return "done" end
redis.call("HINCRBY", KEYS[4], "failed_attempts", 1)
local attempts = tonumber(redis.call("HGET", KEYS[1], "attempts") or "0")
if attempts >= tonumber(ARGV[5]) then
  dead_letter(KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[3], ARGV[4], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
  return "dead"
end
local entry = redis.call("XADD", KEYS[2], "*", "job", redis.call("HGET", KEYS[1], "id"))
redis.call("HSET", KEYS[1], "status", "queued", "entry", entry, "error", ARGV[4])
return "retry"
"""
)

# KEYS: job, stream. ARGV: now, ttl_ms. -> the status before ("" when unknown).
CANCEL = """
local status = redis.call("HGET", KEYS[1], "status")
if not status then return "" end
if status == "queued" then
  redis.call("HSET", KEYS[1], "status", "cancelled", "finished_at", ARGV[1])
  redis.call("XDEL", KEYS[2], redis.call("HGET", KEYS[1], "entry"))
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return status
"""

# KEYS: job, stream, dead. ARGV: dead entry id, now, record_ttl_ms, then the
# record's field/value pairs. -> the new entry id, or "" when the dead-letter
# entry is gone (requeued concurrently).
REQUEUE = """
if #redis.call("XRANGE", KEYS[3], ARGV[1], ARGV[1]) == 0 then return "" end
redis.call("XDEL", KEYS[3], ARGV[1])
redis.call("DEL", KEYS[1])
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
local entry = redis.call("XADD", KEYS[2], "*", "job", redis.call("HGET", KEYS[1], "id"))
redis.call("HSET", KEYS[1], "entry", entry, "status", "queued", "attempts", 0, "queued_at", ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return entry
"""

# -- the webhook outbox (see delivery.py) ----------------------------------------------

# KEYS: outbox, hook. ARGV: job id, now, lease_until, lease token. -> the
# delivery {url, event, record, at, expires_at, attempts} or nil when it is not
# due (another replica holds it) or gone. The lease moves the entry's score into
# the future, so exactly one replica holds a due delivery until it reports back
# or the lease runs out (it died): then any replica may take it again.
CLAIM_WEBHOOK = """
local score = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
if redis.call("EXISTS", KEYS[2]) == 0 then
  redis.call("ZREM", KEYS[1], ARGV[1])
  return nil
end
redis.call("ZADD", KEYS[1], "XX", ARGV[3], ARGV[1])
redis.call("HINCRBY", KEYS[2], "attempts", 1)
redis.call("HSET", KEYS[2], "lease", ARGV[4])
return redis.call("HMGET", KEYS[2], "url", "event", "record", "at", "expires_at", "attempts")
"""

# KEYS: outbox, hook. ARGV: job id, lease token, next attempt time ("" = done:
# delivered or given up). -> 1, or 0 when the lease is no longer ours (it ran
# out and another replica took the delivery, or a newer event replaced it).
FINISH_WEBHOOK = """
if redis.call("HGET", KEYS[2], "lease") ~= ARGV[2] then return 0 end
if ARGV[3] == "" then
  redis.call("ZREM", KEYS[1], ARGV[1])
  redis.call("DEL", KEYS[2])
else
  redis.call("ZADD", KEYS[1], "XX", ARGV[3], ARGV[1])
  redis.call("HDEL", KEYS[2], "lease")
end
return 1
"""
