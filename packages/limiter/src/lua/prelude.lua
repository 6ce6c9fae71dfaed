--[[ prelude.lua: included at the top of every script (scripts.ts inlines it at `--!include prelude.lua`).
  KEYS[1]  the limiter's key prefix '{tollgate:<name>}'; sibling keys are derived from it, and all
           share its hash tag, so every key lives in one Redis Cluster slot:
    <p>:config        hash   epoch, concurrency, effective, leaseTtlMs, dims, cap:<dim>, rate:<dim>,
                             reserve ('maxPriority:slots;…'), pausedUntil (Redis ms)
    <p>:leases        zset   permitId -> lease expiry (Redis ms); permitId = '<ownerId>:<n>'
    <p>:bucket:<dim>  hash   t (tokens, may be negative), ts (Redis ms of t)
    <p>:waiting       zset   waiterId -> priority * 2^44 + sequence
    <p>:waiter-info   hash   waiterId -> cjson {o = owner, p = priority, d = deadline ms or 0, c = {dim = cost}}
    <p>:grants:<own>  list   'waiterId fence expiresAtMs grantedAtMs' for a waiting process; pexpire leaseTtlMs
    <p>:owner:<own>   string '1' with pexpire leaseTtlMs: the process is alive
    <p>:seq, <p>:fence counters: waiter order, fencing numbers
  ARGV[1]  the epoch the client knows ('' before its first configure)

  Time is Redis TIME only (clients send durations, never timestamps). Every loop has a named limit.
  begin() returns a reply to send back as is when the dataset was lost or replaced (epoch mismatch):
  {-1, currentEpoch or ''}; the client then re-registers (configure.v1.lua) and tries again.
]]
local PREFIX = KEYS[1]
local K_CONFIG = PREFIX .. ':config'
local K_LEASES = PREFIX .. ':leases'
local K_WAITING = PREFIX .. ':waiting'
local K_WAITER_INFO = PREFIX .. ':waiter-info'
local K_SEQ = PREFIX .. ':seq'
local K_FENCE = PREFIX .. ':fence'
local function kBucket(dim) return PREFIX .. ':bucket:' .. dim end
local function kOwner(owner) return PREFIX .. ':owner:' .. owner end
local function kGrants(owner) return PREFIX .. ':grants:' .. owner end

local STATUS_RESYNC = -1
local PRIORITY_SCALE = 17592186044416 -- 2^44: sequence numbers below it, priority above
local PUMP_GRANTS_MAX = 64            -- grants one call may hand out; more → wake again at once
local PUMP_DROPS_MAX = 64             -- dead waiters one call may drop from the head of the queue

local TIME = redis.call('TIME')
local NOW = tonumber(TIME[1]) * 1000 + tonumber(TIME[2]) / 1000 -- Redis ms, fractional
local NOW_MS = math.floor(NOW)

local CFG = nil        -- parsed config (loadConfig)
local INFLIGHT = 0     -- live leases after reclaim
local BUCKETS = {}     -- dim -> tokens refilled to NOW (cache for this call)

local function loadConfig()
  local flat = redis.call('HGETALL', K_CONFIG)
  if #flat == 0 then return nil end
  local raw = {}
  for i = 1, #flat, 2 do raw[flat[i]] = flat[i + 1] end
  local cfg = {
    epoch = raw.epoch or '',
    concurrency = tonumber(raw.concurrency or '0'),
    effective = tonumber(raw.effective or raw.concurrency or '0'),
    leaseTtlMs = tonumber(raw.leaseTtlMs),
    pausedUntil = tonumber(raw.pausedUntil or '0'),
    dims = {}, cap = {}, rate = {}, reserve = {},
  }
  for dim in string.gmatch(raw.dims or '', '[^,]+') do
    table.insert(cfg.dims, dim)
    cfg.cap[dim] = tonumber(raw['cap:' .. dim])
    cfg.rate[dim] = tonumber(raw['rate:' .. dim])
  end
  for maxPriority, slots in string.gmatch(raw.reserve or '', '(%d+):(%d+)') do
    table.insert(cfg.reserve, { tonumber(maxPriority), tonumber(slots) })
  end
  return cfg
end

-- Loads the config, checks the epoch and reclaims expired leases. Returns nil, or a reply to return.
local function begin(clientEpoch)
  CFG = loadConfig()
  if CFG == nil or CFG.epoch ~= clientEpoch then
    return { STATUS_RESYNC, CFG and CFG.epoch or '' }
  end
  redis.call('ZREMRANGEBYSCORE', K_LEASES, '-inf', NOW) -- expired leases come back by themselves
  INFLIGHT = redis.call('ZCARD', K_LEASES)
  return nil
end

local function bucketTokens(dim)
  local cached = BUCKETS[dim]
  if cached ~= nil then return cached end
  local cap = CFG.cap[dim]
  local stored = redis.call('HMGET', kBucket(dim), 't', 'ts')
  local tokens = cap
  if stored[1] then
    tokens = tonumber(stored[1]) + (NOW - tonumber(stored[2])) * CFG.rate[dim]
    if tokens > cap then tokens = cap end
  end
  BUCKETS[dim] = tokens
  return tokens
end

local function setTokens(dim, tokens)
  BUCKETS[dim] = tokens
  redis.call('HSET', kBucket(dim), 't', tokens, 'ts', NOW)
end

-- The slots a waiter of this priority may use: the effective limit less the reserves it may not touch.
local function allowedConcurrency(priority)
  local allowed = CFG.effective
  for _, channel in ipairs(CFG.reserve) do
    if channel[1] < priority then allowed = allowed - channel[2] end
  end
  if allowed < 1 then allowed = 1 end -- every priority keeps one slot, even after an adaptive decrease
  return allowed
end

-- 0 when `cost` fits now; else the earliest Redis time (ms) at which it could: the end of a pause,
-- a refill, or the first lease expiry (a release also pumps, so it needs no timer).
local function blockedUntil(priority, cost)
  local wake = 0
  if CFG.pausedUntil > NOW then wake = CFG.pausedUntil end
  if CFG.concurrency > 0 and INFLIGHT >= allowedConcurrency(priority) then
    local first = redis.call('ZRANGE', K_LEASES, 0, 0, 'WITHSCORES')
    local expiry = tonumber(first[2])
    if expiry > wake then wake = expiry end
  end
  for _, dim in ipairs(CFG.dims) do
    local need = cost[dim] or 0
    local tokens = bucketTokens(dim)
    if tokens < need then -- also blocks a zero cost while the bucket is in debt
      local ready = NOW + (need - tokens) / CFG.rate[dim]
      if ready > wake then wake = ready end
    end
  end
  return wake
end

-- Takes the slot and every bucket's cost for permitId. Returns fence, expiresAtMs.
local function grant(permitId, cost)
  INFLIGHT = INFLIGHT + 1
  local expiresAt = NOW_MS + CFG.leaseTtlMs
  redis.call('ZADD', K_LEASES, expiresAt, permitId)
  for _, dim in ipairs(CFG.dims) do
    local amount = cost[dim] or 0
    if amount ~= 0 then setTokens(dim, bucketTokens(dim) - amount) end
  end
  return redis.call('INCR', K_FENCE), expiresAt
end

local function removeWaiter(waiterId)
  redis.call('ZREM', K_WAITING, waiterId)
  redis.call('HDEL', K_WAITER_INFO, waiterId)
end

-- Grants head waiters in (priority, sequence) order while they fit. A grant for `caller`'s own
-- waiters is returned (no list round trip); others are pushed to their owner's grants list.
-- Returns wakeAtMs (0: nobody waits) and the caller's grants as 'waiterId fence expiresAt grantedAt'.
local function pump(caller)
  local own = {}
  local granted, dropped = 0, 0
  while granted < PUMP_GRANTS_MAX and dropped < PUMP_DROPS_MAX do
    local head = redis.call('ZRANGE', K_WAITING, 0, 0)
    if #head == 0 then return 0, own end
    local waiterId = head[1]
    local raw = redis.call('HGET', K_WAITER_INFO, waiterId)
    local waiter = raw and cjson.decode(raw) or nil
    if waiter == nil or (waiter.d > 0 and waiter.d <= NOW) or
       (waiter.o ~= caller and redis.call('EXISTS', kOwner(waiter.o)) == 0) then
      removeWaiter(waiterId) -- deadline passed, or its process is gone
      dropped = dropped + 1
    else
      local wake = blockedUntil(waiter.p, waiter.c)
      if wake > 0 then return math.ceil(wake), own end
      removeWaiter(waiterId)
      local fence, expiresAt = grant(waiterId, waiter.c)
      local message = waiterId .. ' ' .. fence .. ' ' .. expiresAt .. ' ' .. NOW_MS
      if waiter.o == caller then
        table.insert(own, message)
      else
        local list = kGrants(waiter.o)
        redis.call('RPUSH', list, message)
        redis.call('PEXPIRE', list, CFG.leaseTtlMs)
      end
      granted = granted + 1
    end
  end
  return NOW_MS, own -- the limit was reached: whoever reads this pumps again at once
end

-- Reads ARGV[from], ARGV[from+1], … as (dimension, number) pairs, `count` of them.
local function readCost(from, count)
  local cost = {}
  for i = 0, count - 1 do
    cost[ARGV[from + 2 * i]] = tonumber(ARGV[from + 2 * i + 1])
  end
  return cost
end
