--[[ prelude.lua: the shared part of the Tollgate function library. scripts.ts puts it first, then
  every <name>.v1.lua file, under one `#!lua name=tollgate_<hash>` header; the hash of the whole text
  names the library and suffixes each function, so old and new workers can share Redis mid-deploy.
  Every function gets KEYS[1] = the limiter's key prefix '{tollgate:<name>}'; sibling keys are derived
  from it, and all share its hash tag, so every key lives in one Redis Cluster slot:
    <p>:config        hash   epoch, version, concurrency, effective, leaseTtlMs, dims, cap:<dim>,
                             rate:<dim>, reserve ('maxPriority:slots;…'), pausedUntil (Redis ms)
    <p>:leases        zset   permitId -> lease expiry (Redis ms); permitId = '<ownerId>:<n>'
    <p>:bucket:<dim>  hash   t (tokens, may be negative), ts (Redis ms of t)
    <p>:waiting       zset   member 'waiterId priority deadlineMs enqueuedAtMs dim=amount …' (deadline 0 = none)
                             -> priority * 2^44 + sequence; the owner is the waiterId's prefix
    <p>:grants:<own>  list   'waiterId fence expiresAtMs grantedAtMs' for a waiting process; pexpire leaseTtlMs
    <p>:owner:<own>   string '1' with pexpire leaseTtlMs: the process is alive
    <p>:expired       zset   permitId -> expiry (Redis ms): leases reclaimed after expiry and not released yet
    <p>:seq, <p>:fence counters: waiter order, fencing numbers
  ARGV[1] of every function but configure is the epoch the client knows ('' before its first configure).

  Time is Redis TIME only (clients send durations, never timestamps). Every loop has a named limit.
  begin() returns a reply to send back as is when the dataset was lost or replaced (epoch mismatch):
  {-1, currentEpoch or ''}; the client then re-registers (configure.v1.lua) and tries again.
  Per-call state lives in library-level locals that start() resets at the top of every call; the
  parsed static config is cached per limiter and checked against the config's `version` every call.
]]
local STATUS_RESYNC = -1
local PRIORITY_SCALE = 17592186044416 -- 2^44: sequence numbers below it, priority above
local PUMP_GRANTS_MAX = 64            -- grants one call may hand out; more → wake again at once
local PUMP_DROPS_MAX = 64             -- dead waiters one call may drop from the head of the queue
local CONFIG_CACHE_MAX = 1000         -- limiter names whose parsed config one Redis keeps

local PREFIX, K_CONFIG, K_LEASES, K_WAITING, K_SEQ, K_FENCE -- this call's keys
local ARGV = nil       -- this call's arguments
local NOW, NOW_MS      -- Redis ms (fractional, and floored)
local CFG = nil        -- config: the cached static part plus this call's effective and pausedUntil
local INFLIGHT = nil   -- ZCARD of leases, read lazily (expired ones are reclaimed when they would block)
local BUCKETS = {}     -- dim -> tokens refilled to NOW (cache for this call)
local CONFIG_CACHE, CONFIG_CACHE_SIZE = {}, 0

local function kBucket(dim) return PREFIX .. ':bucket:' .. dim end
local function kOwner(owner) return PREFIX .. ':owner:' .. owner end
local function kGrants(owner) return PREFIX .. ':grants:' .. owner end

-- Resets the per-call state. Every function calls it (through begin) first.
local function start(keys, args)
  PREFIX = keys[1]
  K_CONFIG, K_LEASES, K_WAITING = PREFIX .. ':config', PREFIX .. ':leases', PREFIX .. ':waiting'
  K_SEQ, K_FENCE = PREFIX .. ':seq', PREFIX .. ':fence'
  ARGV = args
  local time = redis.call('TIME')
  NOW = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
  NOW_MS = math.floor(NOW)
  CFG, INFLIGHT, BUCKETS = nil, nil, {}
end

-- Parses the static part of the config (changed only by configure, which bumps `version`).
local function loadStatic(version)
  local flat = redis.call('HGETALL', K_CONFIG)
  local raw = {}
  for i = 1, #flat, 2 do raw[flat[i]] = flat[i + 1] end
  local cfg = {
    version = version,
    concurrency = tonumber(raw.concurrency or '0'),
    leaseTtlMs = tonumber(raw.leaseTtlMs),
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

-- Starts a call: time, config, epoch check. Returns nil, or a reply to return as is.
local function begin(keys, args)
  start(keys, args)
  local live = redis.call('HMGET', K_CONFIG, 'epoch', 'version', 'effective', 'pausedUntil')
  if not live[1] or live[1] ~= ARGV[1] then
    return { STATUS_RESYNC, live[1] or '' }
  end
  local cached = CONFIG_CACHE[PREFIX]
  if cached == nil or cached.version ~= live[2] then
    if cached == nil then
      if CONFIG_CACHE_SIZE >= CONFIG_CACHE_MAX then CONFIG_CACHE, CONFIG_CACHE_SIZE = {}, 0 end
      CONFIG_CACHE_SIZE = CONFIG_CACHE_SIZE + 1
    end
    cached = loadStatic(live[2])
    CONFIG_CACHE[PREFIX] = cached
  end
  CFG = cached
  CFG.effective = tonumber(live[3] or CFG.concurrency)
  CFG.pausedUntil = tonumber(live[4] or '0')
  return nil
end

local function inFlight()
  if INFLIGHT == nil then INFLIGHT = redis.call('ZCARD', K_LEASES) end
  return INFLIGHT
end

-- Expired leases come back by themselves: dropped here, by every script that finds them in its way.
-- A lease reclaimed here was not released: its id goes to <p>:expired (zset permitId -> expiry), so that
-- its late release still settles its tokens, once (release.v1.lua). A release of a lease that is in
-- neither zset settles nothing: it was settled already (a release sent twice, e.g. resent on reconnect).
local EXPIRED_REMEMBER_MAX = 1000       -- expired leases one call remembers; more are reclaimed unremembered
local EXPIRED_REMEMBER_MS = 3600000     -- how long an expired lease's late release may still settle (1 h)
local function kExpired() return PREFIX .. ':expired' end
local function reclaim()
  local expired = redis.call('ZRANGE', K_LEASES, '-inf', NOW, 'BYSCORE', 'LIMIT', 0, EXPIRED_REMEMBER_MAX, 'WITHSCORES')
  if #expired > 0 then
    local scored = {}
    for i = 1, #expired, 2 do
      table.insert(scored, expired[i + 1]); table.insert(scored, expired[i])
    end
    redis.call('ZADD', kExpired(), unpack(scored))
    redis.call('ZREMRANGEBYSCORE', kExpired(), '-inf', NOW - EXPIRED_REMEMBER_MS)
    redis.call('ZREMRANGEBYSCORE', K_LEASES, '-inf', NOW)
  end
  INFLIGHT = redis.call('ZCARD', K_LEASES)
end

-- The soonest live lease expiry (Redis ms), reclaiming expired leases first; nil when none is live.
local function firstExpiry()
  local first = redis.call('ZRANGE', K_LEASES, 0, 0, 'WITHSCORES')
  if #first == 0 then return nil end
  if tonumber(first[2]) <= NOW then
    reclaim()
    first = redis.call('ZRANGE', K_LEASES, 0, 0, 'WITHSCORES')
    if #first == 0 then return nil end
  end
  return tonumber(first[2])
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

-- Adds `amount` to a bucket, capped at its capacity (settle, refunds).
local function refund(dim, amount)
  local cap = CFG.cap[dim]
  if cap == nil or amount == 0 then return end
  local tokens = bucketTokens(dim) + amount
  if tokens > cap then tokens = cap end
  setTokens(dim, tokens)
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

-- 0 when a slot is free for this priority; else the soonest lease expiry (a release pumps by itself).
local function concurrencyBlockedUntil(priority)
  if CFG.concurrency == 0 then return 0 end
  local allowed = allowedConcurrency(priority)
  if inFlight() < allowed then return 0 end
  local expiry = firstExpiry()
  if inFlight() < allowed or expiry == nil then return 0 end
  return expiry
end

-- 0 when `cost` fits now; else the earliest Redis time (ms) at which it could: the end of a pause,
-- a refill, or the first lease expiry.
local function blockedUntil(priority, cost)
  local wake = 0
  if CFG.pausedUntil > NOW then wake = CFG.pausedUntil end
  local expiry = concurrencyBlockedUntil(priority)
  if expiry > wake then wake = expiry end
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
  INFLIGHT = inFlight() + 1
  local expiresAt = NOW_MS + CFG.leaseTtlMs
  redis.call('ZADD', K_LEASES, expiresAt, permitId)
  for _, dim in ipairs(CFG.dims) do
    local amount = cost[dim] or 0
    if amount ~= 0 then setTokens(dim, bucketTokens(dim) - amount) end
  end
  return redis.call('INCR', K_FENCE), expiresAt
end

-- A waiting-queue member: 'waiterId priority deadlineMs enqueuedAtMs dim=amount …'.
local function waiterMember(waiterId, priority, deadline, costFrom, costCount)
  local parts = { waiterId, priority, deadline, NOW_MS }
  for i = 0, costCount - 1 do
    table.insert(parts, ARGV[costFrom + 2 * i] .. '=' .. ARGV[costFrom + 2 * i + 1])
  end
  return table.concat(parts, ' ')
end

local function parseWaiter(member)
  local waiterId, priority, deadline, enqueuedAt, rest = string.match(member, '^(%S+) (%d+) (%d+) (%d+)(.*)$')
  local cost = {}
  for dim, amount in string.gmatch(rest, ' ([^=]+)=(%S+)') do cost[dim] = tonumber(amount) end
  return waiterId, string.match(waiterId, '^([^:]+):'), tonumber(priority), tonumber(deadline), tonumber(enqueuedAt), cost
end

-- Is the waiter's process gone? Its owner key was refreshed at most heartbeatMs ≤ leaseTtlMs / 2
-- before it enqueued (options enforce that bound), so a younger waiter's owner key still exists:
-- the EXISTS call is needed only for waiters older than half a lease.
local function ownerGone(owner, enqueuedAt)
  if NOW - enqueuedAt < CFG.leaseTtlMs / 2 then return false end
  return redis.call('EXISTS', kOwner(owner)) == 0
end

-- Grants head waiters in (priority, sequence) order while they fit. A grant for `caller`'s own
-- waiters is returned (no list round trip); others are pushed to their owner's grants list.
-- Returns wakeAtMs (0: nobody waits) and the caller's grants as 'waiterId fence expiresAt grantedAt'.
local function pump(caller, capacityFirst)
  local own = {}
  local granted, dropped = 0, 0
  while granted < PUMP_GRANTS_MAX and dropped < PUMP_DROPS_MAX do
    -- when even the most urgent priority has no slot, nobody can be granted: skip the head. Check
    -- that first when the queue is known to be non-empty (after an enqueue or a grant), else last.
    local fullUntil = 0
    if capacityFirst or granted > 0 then fullUntil = concurrencyBlockedUntil(0) end
    local head = nil
    if fullUntil == 0 then
      head = redis.call('ZRANGE', K_WAITING, 0, 0)
      if #head == 0 then return 0, own end
      fullUntil = concurrencyBlockedUntil(0)
    end
    if fullUntil > 0 then
      if CFG.pausedUntil > fullUntil then return CFG.pausedUntil, own end
      return fullUntil, own
    end
    local member = head[1]
    local waiterId, owner, priority, deadline, enqueuedAt, cost = parseWaiter(member)
    if (deadline > 0 and deadline <= NOW) or (owner ~= caller and ownerGone(owner, enqueuedAt)) then
      redis.call('ZREM', K_WAITING, member) -- deadline passed, or its process is gone
      dropped = dropped + 1
    else
      local wake = blockedUntil(priority, cost)
      if wake > 0 then return math.ceil(wake), own end
      redis.call('ZREM', K_WAITING, member)
      local fence, expiresAt = grant(waiterId, cost)
      local message = waiterId .. ' ' .. fence .. ' ' .. expiresAt .. ' ' .. NOW_MS
      if owner == caller then
        table.insert(own, message)
      else
        local list = kGrants(owner)
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
