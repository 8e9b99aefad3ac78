"""Lua scripts: every state change of a job is one atomic step in Redis.

A job's record (a hash) and its stream entries must never disagree, even when
two workers race (a reclaimed job finishing twice) or a replica dies between
two commands. Each script checks the record's status first, so replaying one
is harmless: completing a completed job stores nothing, acknowledging twice is
a no-op. That is what makes at-least-once delivery safe.

Statuses: queued -> running -> completed | failed (dead-lettered), and
queued -> cancelled. A failed attempt below max_attempts goes back to queued
under a new stream entry.
"""

from __future__ import annotations

_COMMON = """
local function finish_entry(stream, group, entry)
  redis.call("XACK", stream, group, entry)
  redis.call("XDEL", stream, entry)
end
local function dead_letter(job, dead, stats, now, err, ttl_ms)
  redis.call("HSET", job, "status", "failed", "error", err, "finished_at", now)
  local f = redis.call("HMGET", job, "id", "version", "attempts", "text", "callback_url", "created_at")
  redis.call("XADD", dead, "*", "job", f[1] or "", "version", f[2] or "", "attempts", f[3] or "0",
    "error", err, "failed_at", now, "text", f[4] or "", "callback_url", f[5] or "",
    "created_at", f[6] or now)
  redis.call("PEXPIRE", job, ttl_ms)
  redis.call("HINCRBY", stats, "dead_lettered", 1)
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

# KEYS: job, stream, dead, stats. ARGV: entry, group, worker, now, max_attempts,
# timeout_s, ttl_ms. -> {"run", text, queued_at, attempts, reclaimed, callback_url} | {"skip", why}
# | {"dead", error}. The callback URL rides along so a job without one needs no
# second read of its record after it finishes.
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
  dead_letter(KEYS[1], KEYS[3], KEYS[4], ARGV[4], err, ARGV[7])
  return {"dead", err}
end
local reclaimed = "0"
if status == "running" then
  reclaimed = "1"
  redis.call("HINCRBY", KEYS[4], "reclaimed", 1)
end
redis.call("HSET", KEYS[1], "status", "running", "started_at", ARGV[4], "worker", ARGV[3],
  "attempts", attempts + 1)
return {"run", redis.call("HGET", KEYS[1], "text"), tostring(queued_at), tostring(attempts + 1), reclaimed,
  redis.call("HGET", KEYS[1], "callback_url") or ""}
"""
)

# KEYS: job, stream, stats. ARGV: entry, group, now, result_json, ttl_ms,
# processing_s. -> 1 stored, 0 already finished (a duplicate delivery).
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
  stored = 1
end
finish_entry(KEYS[2], ARGV[2], ARGV[1])
return stored
"""
)

# KEYS: job, stream, dead, stats. ARGV: entry, group, now, error_json,
# max_attempts, ttl_ms. -> "retry" | "dead" | "done"
FAIL = (
    _COMMON
    + """
local status = redis.call("HGET", KEYS[1], "status")
finish_entry(KEYS[2], ARGV[2], ARGV[1])
if status ~= "queued" and status ~= "running" then return "done" end
redis.call("HINCRBY", KEYS[4], "failed_attempts", 1)
local attempts = tonumber(redis.call("HGET", KEYS[1], "attempts") or "0")
if attempts >= tonumber(ARGV[5]) then
  dead_letter(KEYS[1], KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[6])
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
