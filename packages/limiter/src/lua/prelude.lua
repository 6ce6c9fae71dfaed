--[[ prelude.lua: the shared part of the Tollgate function library. scripts.ts puts it first, then
  every <name>.v<N>.lua file, under one `#!lua name=tollgate_<hash>` header; the hash of the whole text
  names the library and suffixes each function, so old and new workers can share Redis mid-deploy.
  Every function declares every key it touches, in this order (keys.ts functionKeys), all under the
  hash tag of the prefix <p> = '{tollgate:<name>}', so they live in one Redis Cluster slot and a slot
  migration sees them all (a call meets TRYAGAIN or ASK while they move; it never runs on a node that
  holds only some of them). No key is derived from another or from a process's id:
    KEYS[1] <p>:config   hash   epoch, version (the limits' revision), limits (the fleet's limits as
                                canonical JSON), limitsHash, concurrency, effective, leaseTtlMs, dims,
                                cap:<dim>, rate:<dim>, reserve ('maxPriority:slots;…'), pausedUntil
                                (Redis ms), lanes (the lanes of the queue: 'entry,…' where entry i is
                                the pool that lane i belongs to, '!<pool>' a removed pool whose waiters
                                may still be queued there (the pump rejects them at the head), '' a
                                free lane; '' = no lanes, one queue, no pools; a pool keeps its lane
                                across applies, so no waiter ever moves), pausedUntil@<pool> (Redis ms:
                                that pool's pause); and the dataset's counters and buckets, in the same hash so
                                that a call declares fewer keys: seq (waiter order, HINCRBY), fence
                                (fencing numbers, HINCRBY; a new dataset's fence starts at Redis TIME in
                                µs, or above the highest fence a process re-registering has seen, so
                                fences rise across data loss), t:<dim> (tokens, may be negative),
                                ts:<dim> (Redis ms of t); gdims (the groups' buckets, their budgets:
                                '~<group>/<bucket>,…', each with cap:, rate:, t:, ts: like a pool's,
                                but read only by the calls of waiters of that group)
    KEYS[2] <p>:leases   zset   permitId -> lease expiry (Redis ms); permitId = '<ownerId>:<n>'
    KEYS[3] <p>:waiting  zset   member 'waiterId priority deadlineMs enqueuedAtMs[ @pool] dim=amount …'
                                (deadline 0 = none; integers in plain decimal, never exponent form; a
                                pool's bucket dimensions are named '<pool>/<dim>', a group's budget
                                buckets '~<group>/<bucket>')
                                -> lane * 2^48 + priority * 2^44 + sequence, lane = the pool's index
                                in `lanes` (0 without pools): each pool's waiters are one range of the
                                zset, so the pump finds each pool's head with one ZRANGE BYSCORE and a
                                waiter blocked on one pool's buckets never delays another pool's
                                (DESIGN §9); the owner is the waiterId's prefix
    KEYS[4] <p>:owners   zset   ownerId -> Redis ms until which the process counts as alive (its
                                heartbeat moves it leaseTtlMs ahead)
    KEYS[5] <p>:granted  hash   waiterId -> 'fence expiresAtMs grantedAtMs' for a grant the pump made
                                to another process than the caller's, until the permit is released,
                                cancelled or reclaimed: the durable
                                copy of a grant whose message (below) a process missed; its heartbeat
                                collects it
    KEYS[6] <p>:expired  zset   permitId -> expiry (Redis ms): leases reclaimed after expiry and not
                                released yet (kept 1 h), so that a late release settles once
  A pump's grant reaches its process as a message 'waiterId fence expiresAtMs grantedAtMs' (or
  'waiterId ! dimension capacity': rejected, its cost no longer fits a lowered capacity; or
  'waiterId $ ~<group>/<bucket> retryAfterMs': rejected, its group's budget no longer covers it): in the reply
  when the caller is its owner, else PUBLISHed on channel '<p>:grants:<ownerId>' (a channel is no key,
  so it needs no declaring and never migrates).
    tollgate:datasets string (configure only, KEYS[7] on a single Redis; absent on a Cluster): set once
                             per Redis database; while it exists the database has not lost its data
  ARGV[1] of every function but configure is the epoch the client knows ('' before its first configure).

  Time is Redis TIME only (clients send durations, never timestamps). Every loop has a named limit.
  Every function reads it first except release, which reads it only where a bucket or a waiter needs it.
  begin() returns a reply to send back as is when the dataset was lost or replaced (epoch mismatch):
  {-1, currentEpoch or ''}; the client then re-registers (configure.v2.lua) and tries again.
  Per-call state lives in library-level locals that start() resets at the top of every call; the
  parsed static config is cached per key prefix and checked against the config's `epoch` and `version`
  every call (both read by the HMGET every call makes anyway), so the cache never serves the limits of
  another dataset: another database of the same server (SELECT), or the same name after FLUSHALL.
  That HMGET also reads the buckets of the cached config's dimensions (used only when the cache holds),
  so a call with rates reads its config and buckets in one command.
  Numbers written into strings go through int() (plain decimal): Lua's tostring uses %.14g, so a
  deadline or fence of 15 digits or more would be written in exponent form and could not be parsed.
  Cost per call (Redis runs every call of the fleet on one thread): a number passed to redis.call is
  formatted by Redis with snprintf('%.17g'), several times the cost of int()'s '%d', so hot-path
  commands get strings: literals ('0', '1') or an int() made once per call (nowText) or per grant;
  and a numeric string that Redis or this library wrote (TIME, a score, a queue member's fields) is
  converted with `text + 0`, one string-to-number conversion, where tonumber makes two.
  A clock step backwards (Redis TIME earlier than a bucket's ts) never drains a bucket nor refills it
  twice: a bucket's time only moves forward.
]]
local STATUS_RESYNC = -1
local PRIORITY_SCALE = 17592186044416 -- 2^44: sequence numbers below it, priority above
local LANE_SCALE = 281474976710656    -- 2^48: priority and sequence below it, the lane above
local LANES_MAX = 32                  -- lanes one limiter may have: lane * 2^48 stays below 2^53 (exact)
local REMOVED = '!'                   -- the prefix of a lane whose pool an apply removed
local PUMP_GRANTS_MAX = 64            -- grants one call may hand out; more → wake again at once
local PUMP_DROPS_MAX = 64             -- dead waiters one call may drop from the head of the queue
local CONFIG_CACHE_MAX = 1000         -- limiter names whose parsed config one Redis keeps
local TIMEOUT_MS_MAX = 2147483647     -- a waiter's deadline, ms from now (2^31 − 1, about 24.8 days)
local REJECTED = '!'                  -- the fence field of a grants message that rejects the waiter
local OVER_BUDGET = '$'               -- the fence field of a message that rejects it for its group's budget
local GROUP_BUCKET_BYTE = 126         -- string.byte('~'): the first byte of a group's bucket dimension
local RECLAIM_MAX = 256               -- expired leases one call reclaims (more: the next calls do)
local FUNCTION_KEYS = 6               -- KEYS every function declares (configure may add the marker)

local K_CONFIG, K_LEASES, K_WAITING, K_OWNERS, K_GRANTED, K_EXPIRED -- this call's keys
local ARGV = nil       -- this call's arguments
local NOW, NOW_MS      -- Redis ms (fractional, and floored)
local NOW_US           -- Redis µs (an integer)
local NOW_TEXT         -- int(NOW_MS), made once per call when needed (nowText)
local CFG = nil        -- config: the cached static part plus this call's effective, pausedUntil and lanePausedUntil
local INFLIGHT = nil   -- ZCARD of leases, read lazily (expired ones are reclaimed when they would block)
local FIRST_EXPIRY = nil -- firstExpiry's answer in this call (false: no live lease; nil: not read yet)
local BUCKETS = {}     -- dim -> tokens refilled to NOW (cache for this call)
local BUCKET_TS = {}   -- dim -> the bucket's time: max(NOW, its stored ts) (a clock step back waits)
local BUCKETS_FILLED = false -- loadBucket wrote BUCKETS and BUCKET_TS since start() last emptied them
local CONFIG_CACHE, CONFIG_CACHE_SIZE = {}, 0
local NO_COST = {}     -- the cost of a call that names no dimension (shared: costs are only read)
local BUDGET_SPENT = false -- this call granted a waiter with group budgets (the pump then looks for heads they no longer cover)
-- '0' … '64' -> 0 … 64: the counts and priorities a client sends, read without a string-to-number
-- conversion (anything else goes through tonumber, as before)
local SMALL_INTEGER = {}
for i = 0, 64 do SMALL_INTEGER['' .. i] = i end -- (no library functions while the library loads)

-- '<p>:grants:<owner>': '<p>:config' less ':config' (7 characters), then ':grants:' (made once per
-- config, loadStatic), and the owner. Called only once the call's config is read.
local function grantsChannel(owner) return CFG.grantsPrefix .. owner end

-- Reads Redis TIME into NOW, NOW_MS and NOW_US.
local function readTime()
  local time = redis.call('TIME')
  local seconds, micros = time[1] + 0, time[2] + 0
  NOW = seconds * 1000 + micros / 1000
  NOW_MS = seconds * 1000 + (micros - micros % 1000) / 1000 -- floor(NOW), exact, without a library call
  NOW_US = seconds * 1000000 + micros
end

-- Resets the per-call state. Every function calls it (through begin) first. `clockLater` (release
-- only): TIME is read where the call first needs it, loadBucket (a bucket) or roundGate (a waiter),
-- else never; without it, now.
local function start(keys, args, clockLater)
  -- six reads, no unpack call; KEYS is an array, so a missing last key means fewer keys
  K_CONFIG, K_LEASES, K_WAITING, K_OWNERS, K_GRANTED, K_EXPIRED = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]
  if K_EXPIRED == nil then error('tollgate: a function needs its ' .. FUNCTION_KEYS .. ' keys, got ' .. #keys) end
  ARGV = args
  if clockLater then NOW, NOW_MS, NOW_US = nil, nil, nil else readTime() end
  CFG, INFLIGHT, FIRST_EXPIRY, NOW_TEXT, BUDGET_SPENT = nil, nil, nil, nil, false
  -- new tables only when the last call filled them (loadBucket sets both): no garbage per call
  -- for a limiter without rates
  if BUCKETS_FILLED then BUCKETS, BUCKET_TS, BUCKETS_FILLED = {}, {}, false end
end

-- An integer as plain decimal digits (never exponent form).
local function int(value) return string.format('%d', value) end

-- NOW_MS as plain decimal, formatted at most once per call.
local function nowText()
  if NOW_TEXT == nil then NOW_TEXT = int(NOW_MS) end
  return NOW_TEXT
end

-- The config fields every call reads (readLive), and those parsed once per config version (loadStatic).
local LIVE_EPOCH, LIVE_VERSION, LIVE_EFFECTIVE, LIVE_PAUSED = 'epoch', 'version', 'effective', 'pausedUntil'
local LIVE_FIELDS = { LIVE_EPOCH, LIVE_VERSION, LIVE_EFFECTIVE, LIVE_PAUSED }
local STATIC_FIELDS = { 'concurrency', 'leaseTtlMs', 'dims', 'reserve', 'lanes', 'fair', 'gdims' }

-- Parses the static part of the config (changed only by configure, which bumps `version`). It reads
-- only the static fields: the hash also holds the counters and the buckets.
local function loadStatic(epoch, version)
  local static = redis.call('HMGET', K_CONFIG, unpack(STATIC_FIELDS))
  local cfg = {
    epoch = epoch,
    version = version,
    concurrency = tonumber(static[1] or '0'),
    leaseTtlMs = tonumber(static[2]),
    dims = {}, cap = {}, rate = {}, reserve = {},
    tField = {}, tsField = {}, -- each bucket's field names in <p>:config, built once per config
    lanes = {}, laneIndex = {}, -- the configured pools in lane order, and pool name -> lane (0-based)
    positions = {},              -- every lane's entry in `lanes` (removed and free ones too): what the pump reads
    lanePausedUntil = {},        -- pool name -> Redis ms of its pause (this call's, filled by useConfig)
    fair = static[6] == '1',     -- the limits have groups: queued waiters are scored by fair tags (acquire.v2.lua fairTag)
    groupDims = {},              -- group -> its budget buckets' dimensions ('~<group>/<bucket>'); not in `dims`, so
                                 -- that no call reads them unless its waiter is of that group
    budgets = false,             -- some group has buckets (else no call spends a step on them)
    liveFields = { unpack(LIVE_FIELDS) }, -- readLive's HMGET: LIVE_FIELDS, t:<dim>, ts:<dim> of each dim, then pausedUntil@<pool> of each lane
    liveOnly = false,            -- liveFields is LIVE_FIELDS alone (no dims, no pools): readLive names them, no unpack
    grantsPrefix = string.sub(K_CONFIG, 1, -8) .. ':grants:', -- grantsChannel's
  }
  local limitFields = {}
  for dim in string.gmatch(static[3] or '', '[^,]+') do
    table.insert(cfg.dims, dim)
    table.insert(limitFields, 'cap:' .. dim); table.insert(limitFields, 'rate:' .. dim)
    cfg.tField[dim], cfg.tsField[dim] = 't:' .. dim, 'ts:' .. dim
    table.insert(cfg.liveFields, cfg.tField[dim]); table.insert(cfg.liveFields, cfg.tsField[dim])
  end
  local bucketDims = { unpack(cfg.dims) }
  for dim in string.gmatch(static[7] or '', '[^,]+') do
    local group = string.match(dim, '^~([^/]+)/')
    if group ~= nil then
      if cfg.groupDims[group] == nil then cfg.groupDims[group] = {} end
      table.insert(cfg.groupDims[group], dim)
      table.insert(bucketDims, dim)
      table.insert(limitFields, 'cap:' .. dim); table.insert(limitFields, 'rate:' .. dim)
      cfg.tField[dim], cfg.tsField[dim] = 't:' .. dim, 'ts:' .. dim
      cfg.budgets = true
    end
  end
  if #limitFields > 0 then
    local limits = redis.call('HMGET', K_CONFIG, unpack(limitFields))
    for i, dim in ipairs(bucketDims) do
      cfg.cap[dim], cfg.rate[dim] = tonumber(limits[2 * i - 1]), tonumber(limits[2 * i])
    end
  end
  for maxPriority, slots in string.gmatch(static[4] or '', '(%d+):(%d+)') do
    table.insert(cfg.reserve, { tonumber(maxPriority), tonumber(slots) })
  end
  local lanes = static[5] or ''
  for entry in string.gmatch(lanes .. ',', '([^,]*),') do -- each entry ends with a comma: empty ones count too
    if lanes ~= '' and #cfg.positions < LANES_MAX then
      if entry ~= '' and string.sub(entry, 1, 1) ~= REMOVED then
        cfg.laneIndex[entry] = #cfg.positions
        table.insert(cfg.lanes, entry)
        table.insert(cfg.liveFields, 'pausedUntil@' .. entry)
      end
      table.insert(cfg.positions, entry)
    end
  end
  cfg.liveOnly = #cfg.liveFields == #LIVE_FIELDS
  return cfg
end

-- A bucket's tokens refilled to NOW from its stored fields (nil, nil: never written, so full).
local function loadBucket(dim, storedTokens, storedTs)
  if NOW == nil then readTime() end
  local cap = CFG.cap[dim]
  local tokens, ts = cap, NOW
  if storedTokens then
    tokens = tonumber(storedTokens)
    local stamp = tonumber(storedTs)
    if stamp > NOW then ts = stamp -- the clock stepped back: no refill until it is past ts again
    else tokens = tokens + (NOW - stamp) * CFG.rate[dim] end
    if tokens > cap then tokens = cap end
  end
  BUCKETS[dim], BUCKET_TS[dim], BUCKETS_FILLED = tokens, ts, true
  return tokens
end

-- Reads this call's config: the static part from the cache when its epoch and version still match.
-- `live` is readLive's HMGET: epoch version effective pausedUntil, then the buckets of `cached` (the
-- config cached when it was read, or nil).
local function useConfig(live, cached)
  local hit = cached ~= nil and cached.epoch == live[1] and cached.version == live[2]
  if not hit then
    if cached == nil then
      if CONFIG_CACHE_SIZE >= CONFIG_CACHE_MAX then CONFIG_CACHE, CONFIG_CACHE_SIZE = {}, 0 end
      CONFIG_CACHE_SIZE = CONFIG_CACHE_SIZE + 1
    end
    cached = loadStatic(live[1], live[2])
    CONFIG_CACHE[K_CONFIG] = cached
  end
  CFG = cached
  CFG.effective = (live[3] or CFG.concurrency) + 0
  local pausedUntil = live[4]
  if pausedUntil then CFG.pausedUntil = pausedUntil + 0 else CFG.pausedUntil = 0 end
  -- the buckets and pool pauses read with the config belong to this config only when the cache held (same version)
  if hit then
    for i = 1, #CFG.dims do loadBucket(CFG.dims[i], live[3 + 2 * i], live[4 + 2 * i]) end
  end
  local lanes = CFG.lanes
  if #lanes > 0 then
    local lanePauses, laneFrom = live, #LIVE_FIELDS + 2 * #CFG.dims
    if not hit then
      lanePauses = redis.call('HMGET', K_CONFIG, unpack(CFG.liveFields, laneFrom + 1))
      laneFrom = 0
    end
    for i = 1, #lanes do CFG.lanePausedUntil[lanes[i]] = (lanePauses[laneFrom + i] or 0) + 0 end
  end
end

-- The config's live fields, plus the buckets of the cached config's dimensions (when one is cached);
-- and that cached config (nil when none).
local function readLive()
  local cached = CONFIG_CACHE[K_CONFIG]
  if cached == nil or cached.liveOnly then
    return redis.call('HMGET', K_CONFIG, LIVE_EPOCH, LIVE_VERSION, LIVE_EFFECTIVE, LIVE_PAUSED), cached
  end
  return redis.call('HMGET', K_CONFIG, unpack(cached.liveFields)), cached
end

-- Starts a call: time, config, epoch check. Returns nil, or a reply to return as is.
local function begin(keys, args, clockLater)
  start(keys, args, clockLater)
  local live, cached = readLive()
  if not live[1] or live[1] ~= ARGV[1] then
    return { STATUS_RESYNC, live[1] or '' }
  end
  useConfig(live, cached)
  return nil
end

local function inFlight()
  if INFLIGHT == nil then INFLIGHT = redis.call('ZCARD', K_LEASES) end
  return INFLIGHT
end

-- A function that added, moved or removed leases other than by grant(): inFlight and firstExpiry read them again.
local function leasesChanged() INFLIGHT, FIRST_EXPIRY = nil, nil end

-- Expired leases come back by themselves: dropped here (with their grant copies), by every script
-- that finds them in its way; at most RECLAIM_MAX per call (more: the next calls take them).
-- A lease reclaimed here was not released: its id goes to <p>:expired (zset permitId -> expiry), so that
-- its late release still settles its tokens, once (release.v2.lua). A release of a lease that is in
-- neither zset settles nothing: it was settled already (a release sent twice, e.g. resent on reconnect).
local EXPIRED_REMEMBER_MS = 3600000     -- how long an expired lease's late release may still settle (1 h)
local function reclaim()
  local expired = redis.call('ZRANGE', K_LEASES, '-inf', NOW, 'BYSCORE', 'LIMIT', 0, RECLAIM_MAX, 'WITHSCORES')
  if #expired > 0 then
    local scored, ids = {}, {}
    for i = 1, #expired, 2 do
      table.insert(scored, expired[i + 1]); table.insert(scored, expired[i])
      table.insert(ids, expired[i])
    end
    redis.call('ZADD', K_EXPIRED, unpack(scored))
    redis.call('ZREMRANGEBYSCORE', K_EXPIRED, '-inf', NOW - EXPIRED_REMEMBER_MS)
    redis.call('ZREM', K_LEASES, unpack(ids))
    redis.call('HDEL', K_GRANTED, unpack(ids))
  end
  INFLIGHT = redis.call('ZCARD', K_LEASES)
end

-- The soonest live lease expiry (Redis ms), reclaiming expired leases first; nil when none is live.
-- Read once per call (an acquire that queues asks, then its pump): grant() keeps it, leasesChanged() drops it.
local function readFirstExpiry()
  local first = redis.call('ZRANGE', K_LEASES, '0', '0', 'WITHSCORES')
  if #first == 0 then return nil end
  local expiry = first[2] + 0
  if expiry <= NOW then
    reclaim()
    first = redis.call('ZRANGE', K_LEASES, '0', '0', 'WITHSCORES')
    if #first == 0 then return nil end
    expiry = first[2] + 0
  end
  return expiry
end
local function firstExpiry()
  if FIRST_EXPIRY == nil then FIRST_EXPIRY = readFirstExpiry() or false end
  return FIRST_EXPIRY or nil
end

local function bucketTokens(dim)
  local cached = BUCKETS[dim]
  if cached ~= nil then return cached end
  local stored = redis.call('HMGET', K_CONFIG, CFG.tField[dim], CFG.tsField[dim])
  return loadBucket(dim, stored[1], stored[2])
end

local function setTokens(dim, tokens)
  BUCKETS[dim] = tokens
  redis.call('HSET', K_CONFIG, CFG.tField[dim], tokens, CFG.tsField[dim], BUCKET_TS[dim] or NOW)
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
  local reserve = CFG.reserve
  for i = 1, #reserve do
    if reserve[i][1] < priority then allowed = allowed - reserve[i][2] end
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

-- 0 when `cost` fits now; else the earliest Redis time (ms) at which it could: the end of a pause
-- (the account's, or its pool's), a refill, or the first lease expiry.
local function blockedUntil(priority, cost, lane)
  local wake = 0
  if CFG.pausedUntil > NOW then wake = CFG.pausedUntil end
  local lanePause = CFG.lanePausedUntil[lane]
  if lanePause ~= nil and lanePause > wake and lanePause > NOW then wake = lanePause end
  local expiry = concurrencyBlockedUntil(priority)
  if expiry > wake then wake = expiry end
  for i = 1, #CFG.dims do
    local dim = CFG.dims[i]
    local need = cost[dim] or 0
    local tokens = bucketTokens(dim)
    if tokens < need then -- also blocks a zero cost while the bucket is in debt
      local ready = BUCKET_TS[dim] + (need - tokens) / CFG.rate[dim]
      if ready > wake then wake = ready end
    end
  end
  return wake
end

-- A budget never makes a waiter wait (DESIGN §9): the first of the cost's group budget buckets that
-- cannot cover its amount now, and the ms until it will have refilled enough (the longest such wait
-- when several are short); nil when every budget covers it (or the cost has none). Also refuses a zero
-- amount while the bucket is in debt (a settle charged more than was reserved).
local function budgetShort(cost)
  local short, waitMs = nil, 0
  for dim, amount in pairs(cost) do
    if string.byte(dim) == GROUP_BUCKET_BYTE and CFG.cap[dim] ~= nil then
      local tokens = bucketTokens(dim)
      if tokens < amount or tokens < 0 then
        local need = amount
        if need < 0 then need = 0 end
        local ms = math.ceil(BUCKET_TS[dim] + (need - tokens) / CFG.rate[dim] - NOW)
        if ms < 1 then ms = 1 end
        if short == nil or ms > waitMs then short, waitMs = dim, ms end
      end
    end
  end
  return short, waitMs
end

-- Takes the slot and every bucket's cost for permitId. Returns fence, expiresAtMs, and expiresAtMs as
-- int() text (for a grant message).
local function grant(permitId, cost)
  INFLIGHT = inFlight() + 1
  local expiresAt = NOW_MS + CFG.leaseTtlMs
  local expiresText = int(expiresAt)
  redis.call('ZADD', K_LEASES, expiresText, permitId)
  -- a new permit (never in leases already: a re-submission that was granted is answered before)
  if FIRST_EXPIRY == false or (FIRST_EXPIRY ~= nil and expiresAt < FIRST_EXPIRY) then FIRST_EXPIRY = expiresAt end
  for i = 1, #CFG.dims do
    local dim = CFG.dims[i]
    local amount = cost[dim] or 0
    if amount ~= 0 then setTokens(dim, bucketTokens(dim) - amount) end
  end
  if CFG.budgets then -- the group's budgets, in the same decision (G3)
    for dim, amount in pairs(cost) do
      if string.byte(dim) == GROUP_BUCKET_BYTE and CFG.cap[dim] ~= nil then
        BUDGET_SPENT = true
        if amount ~= 0 then setTokens(dim, bucketTokens(dim) - amount) end
      end
    end
  end
  return redis.call('HINCRBY', K_CONFIG, 'fence', '1'), expiresAt, expiresText
end

-- A grant message 'waiterId fence expiresAtMs grantedAtMs' (granted now).
local function grantMessage(waiterId, fence, expiresText)
  return waiterId .. ' ' .. int(fence) .. ' ' .. expiresText .. ' ' .. nowText()
end

-- A waiting-queue member: 'waiterId priority deadlineMs enqueuedAtMs[ @pool] dim=amount …' (no pool
-- token without pools: the members of a limiter without pools are what they were before pools).
local PRIORITY_TEXT = { [0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' } -- priorities 0..9 as text
local function waiterMember(waiterId, priority, deadline, lane, costFrom, costCount)
  local deadlineText = '0'
  if deadline ~= 0 then deadlineText = int(deadline) end
  local member = waiterId .. ' ' .. (PRIORITY_TEXT[priority] or int(priority)) .. ' ' .. deadlineText .. ' ' .. nowText()
  if lane == '' and costCount == 0 then return member end -- no table to build and join (the most common member)
  local parts = { member }
  if lane ~= '' then table.insert(parts, '@' .. lane) end
  for i = 0, costCount - 1 do
    table.insert(parts, ARGV[costFrom + 2 * i] .. '=' .. ARGV[costFrom + 2 * i + 1])
  end
  return table.concat(parts, ' ')
end

-- Returns nil for a member it cannot read (the pump drops it rather than fail for every process).
local function parseWaiter(member)
  -- one match for the waiterId and its owner (the part before its first colon); the pool's only when
  -- something follows enqueuedAt
  local waiterId, owner, priority, deadline, enqueuedAt, rest = string.match(member, '^(([^:%s]+):%S*) (%d+) (%d+) (%d+)(.*)$')
  if waiterId == nil then return nil end
  local lane, dims = '', rest
  if rest ~= '' then
    local named, after = string.match(rest, '^ @(%S+)(.*)$')
    if named ~= nil then lane, dims = named, after end
  end
  local cost = NO_COST
  if dims ~= '' then
    cost = {}
    for dim, amount in string.gmatch(dims, ' ([^=%s]+)=(%S+)') do
      local value = tonumber(amount)
      if value == nil then return nil end
      cost[dim] = value
    end
  end
  return waiterId, owner, priority + 0, deadline + 0, enqueuedAt + 0, cost, lane -- digits only (the pattern)
end

-- The score of a waiter in the queue: its pool's lane, then priority, then arrival.
local function waiterScore(lane, priority, sequence)
  return (CFG.laneIndex[lane] or 0) * LANE_SCALE + priority * PRIORITY_SCALE + sequence
end

-- The first dimension of `cost` that the config cannot hold (not configured, or above its capacity):
-- dim, capacity (0 when not configured); nil when every amount fits some day.
local function exceedsCapacity(cost)
  if cost == NO_COST then return nil end -- no pairs() call for a waiter without a cost
  for dim, amount in pairs(cost) do
    local cap = CFG.cap[dim]
    if cap == nil then return dim, 0 end
    if amount > cap then return dim, cap end
  end
  return nil
end

-- Why a queued waiter can never be granted under the limits in force, as a rejection's (dimension,
-- capacity): '@<pool>', 0 when its pool is gone (an apply removed it; '@' for a waiter without a pool
-- in a limiter that now has pools), else exceedsCapacity's. nil when it may be granted some day.
local function poolGoneOrTooBig(lane, cost)
  if (lane ~= '' and CFG.laneIndex[lane] == nil) or (lane == '' and #CFG.lanes > 0) then return '@' .. lane, 0 end
  return exceedsCapacity(cost)
end

-- Sends a waiter its grant or rejection message: in the caller's reply when it is the caller's own,
-- else on its owner's channel.
local function notify(owner, caller, own, message)
  if owner == caller then
    table.insert(own, message)
  else
    redis.call('PUBLISH', grantsChannel(owner), message)
  end
end

-- The owner's channel may miss a message (its subscription was down): the grant stays here until the
-- permit is released, cancelled or reclaimed, and the owner's heartbeat collects it.
local function keepGrant(waiterId, fence, expiresText)
  local message = int(fence) .. ' ' .. expiresText .. ' ' .. nowText()
  redis.call('HSET', K_GRANTED, waiterId, message)
  return waiterId .. ' ' .. message
end

-- Marks a process alive until `untilMs`; returns whether it was alive (its mark not yet passed).
local function markAlive(owner, untilMs)
  local was = redis.call('ZSCORE', K_OWNERS, owner)
  redis.call('ZADD', K_OWNERS, int(untilMs), owner)
  return was ~= false and was + 0 > NOW
end

-- 'waiterId ! dimension capacity': the waiter left the queue because its cost can never fit.
local function rejection(waiterId, dim, cap)
  return waiterId .. ' ' .. REJECTED .. ' ' .. dim .. ' ' .. tostring(cap)
end

-- 'waiterId $ ~<group>/<bucket> retryAfterMs': the waiter left the queue, its group's budget no longer covers it.
local function overBudget(waiterId, dim, waitMs)
  return waiterId .. ' ' .. OVER_BUDGET .. ' ' .. dim .. ' ' .. int(waitMs)
end

-- Is the waiter's process gone? Its mark was moved at most heartbeatMs ≤ leaseTtlMs / 2 before it
-- enqueued (options enforce that bound), so a younger waiter's mark has not passed: the ZSCORE is
-- needed only for waiters older than half a lease.
local function ownerGone(owner, enqueuedAt)
  if NOW - enqueuedAt < CFG.leaseTtlMs / 2 then return false end
  local aliveUntil = redis.call('ZSCORE', K_OWNERS, owner)
  return aliveUntil == false or aliveUntil + 0 <= NOW
end

-- Fair share (limits with groups): a grant moves its band's virtual time 'vt@<pool>@<priority>' up to
-- the granted waiter's tag, so that a group arriving later starts where service is (acquire.v2.lua
-- fairTag), not behind tags a group took while it was alone. `score` is the waiter's queue score.
local function advanceVirtual(lane, priority, score)
  local tag = score - (CFG.laneIndex[lane] or 0) * LANE_SCALE - priority * PRIORITY_SCALE
  local field = 'vt@' .. lane .. '@' .. priority
  local virtual = redis.call('HGET', K_CONFIG, field)
  if virtual == false or virtual + 0 < tag then redis.call('HSET', K_CONFIG, field, int(tag)) end
end

-- What the pump does with one head waiter: drops it (unreadable, deadline passed, or its process is
-- gone), rejects it (the limits were lowered under it: it can never be granted), grants it, or leaves
-- it. Returns TOOK_DROPPED, TOOK_GRANTED, or the Redis time (> 0) from which it could be granted.
local TOOK_DROPPED, TOOK_GRANTED = -1, 0
local function takeHead(member, caller, own, score)
  local waiterId, owner, priority, deadline, enqueuedAt, cost, lane = parseWaiter(member)
  local tooBig, cap = nil, nil
  if waiterId ~= nil then tooBig, cap = poolGoneOrTooBig(lane, cost) end
  if waiterId == nil or (deadline > 0 and deadline <= NOW) or (owner ~= caller and ownerGone(owner, enqueuedAt)) then
    redis.call('ZREM', K_WAITING, member)
    return TOOK_DROPPED
  end
  if tooBig ~= nil then
    redis.call('ZREM', K_WAITING, member)
    notify(owner, caller, own, rejection(waiterId, tooBig, cap))
    return TOOK_DROPPED
  end
  if CFG.budgets then -- its group's budget ran out while it waited (its own group's grants spent it): it never waits for it
    local short, waitMs = budgetShort(cost)
    if short ~= nil then
      redis.call('ZREM', K_WAITING, member)
      notify(owner, caller, own, overBudget(waiterId, short, waitMs))
      return TOOK_DROPPED
    end
  end
  local wake = blockedUntil(priority, cost, lane)
  if wake > 0 then return wake end
  redis.call('ZREM', K_WAITING, member)
  if CFG.fair and score ~= nil then advanceVirtual(lane, priority, score + 0) end
  local fence, _, expiresText = grant(waiterId, cost)
  if owner == caller then -- in the reply (a reply lost on the way is answered again on re-submission)
    table.insert(own, grantMessage(waiterId, fence, expiresText))
  else
    notify(owner, caller, own, keepGrant(waiterId, fence, expiresText))
  end
  return TOOK_GRANTED
end

-- One lane's range of queue scores (lane 0-based), as ZRANGE BYSCORE bounds. The last lane's range is
-- open above, so that an entry scored for a lane that a change of pools removed is still seen
-- (configure scores them again).
local function laneRange(lane)
  local low = lane * LANE_SCALE
  if lane < #CFG.positions - 1 then return int(low), '(' .. int(low + LANE_SCALE) end
  return int(low), '+inf'
end

-- The head of one lane: member and rank (priority * 2^44 + sequence), or nil when the lane is empty.
local function laneHead(lane)
  local low, high = laneRange(lane)
  local head = redis.call('ZRANGE', K_WAITING, low, high, 'BYSCORE', 'LIMIT', '0', '1', 'WITHSCORES')
  if #head == 0 then return nil end
  return { head[1], head[2] - lane * LANE_SCALE }
end

-- Each pool's head, fetched once per pump and again only for the lane a round changed (HEADS[lane]
-- nil: not fetched, false: empty); ORDER lists the lanes that have a head, most urgent first. HEAD is
-- the queue's head without pools.
local HEADS, ORDER, HEAD, HEAD_SCORE = {}, {}, nil, nil
local function byRank(a, b) return HEADS[a][2] < HEADS[b][2] end
local function orderHeads()
  for i = #ORDER, 1, -1 do ORDER[i] = nil end
  for lane = 1, #CFG.positions do
    if HEADS[lane] == nil then HEADS[lane] = CFG.positions[lane] ~= '' and laneHead(lane - 1) or false end
    if HEADS[lane] then table.insert(ORDER, lane) end
  end
  if #ORDER > 1 then table.sort(ORDER, byRank) end
  return #ORDER > 0
end
local function fetchHead()
  if CFG.fair then -- its score too: a grant moves the band's virtual time to it
    local head = redis.call('ZRANGE', K_WAITING, '0', '0', 'WITHSCORES')
    HEAD, HEAD_SCORE = head[1], head[2]
  else
    HEAD = redis.call('ZRANGE', K_WAITING, '0', '0')[1]
  end
  return HEAD ~= nil
end

-- The gate of one pump round: nil when the round goes on (a slot is free and `fetch()` found a head);
-- else what the pump returns as wakeAtMs (0: nobody waits; else when a slot frees or the pause ends).
-- When even the most urgent priority has no slot, nobody can be granted: the heads are not read. That
-- is checked first when the queue is known to be non-empty (`full` first: after an enqueue or a grant).
local function roundGate(fetch, fullFirst)
  local fullUntil = 0
  if fullFirst then
    if NOW == nil then readTime() end
    fullUntil = concurrencyBlockedUntil(0)
  end
  if fullUntil == 0 then
    if not fetch() then return 0 end
    if NOW == nil then readTime() end -- someone waits: the clock decides (a call that started without it)
    fullUntil = concurrencyBlockedUntil(0)
  end
  if fullUntil == 0 then return nil end
  if CFG.pausedUntil > fullUntil then return CFG.pausedUntil end
  return fullUntil
end

-- After a grant that spent a group's budget, with no slot left for anyone: the rounds do not read the
-- heads then (roundGate), so a head whose budget that grant used up would wait for a slot only to be
-- rejected at it. It is rejected now (each lane's head, then its next, at most PUMP_DROPS_MAX).
local function rejectOverBudgetHeads(caller, own)
  local dropped = 0
  local lanes = #CFG.positions > 1
  for lane = 1, math.max(1, #CFG.positions) do
    while dropped < PUMP_DROPS_MAX do
      local member = nil
      if not lanes then member = redis.call('ZRANGE', K_WAITING, '0', '0')[1]
      elseif CFG.positions[lane] ~= '' then
        local head = laneHead(lane - 1)
        if head ~= nil then member = head[1] end
      end
      if member == nil then break end
      local waiterId, owner, _, _, _, cost = parseWaiter(member)
      if waiterId == nil then break end
      local short, waitMs = budgetShort(cost)
      if short == nil then break end
      redis.call('ZREM', K_WAITING, member)
      notify(owner, caller, own, overBudget(waiterId, short, waitMs))
      dropped = dropped + 1
    end
  end
end

-- The pump with pools: looks at the head of each pool (one ZRANGE each, then one per lane it changes)
-- and takes the most urgent head, in (priority, arrival) order across pools, that can be granted now;
-- a head blocked by its own pool's buckets or pause is passed over, so it never delays another pool's
-- waiters (DESIGN §9). Head of line still holds within a pool (G4). Same contract as pump.
local function pumpLanes(caller, capacityFirst)
  local own = {}
  local granted, dropped = 0, 0
  for lane = 1, #CFG.positions do HEADS[lane] = nil end
  while granted < PUMP_GRANTS_MAX and dropped < PUMP_DROPS_MAX do
    local gate = roundGate(orderHeads, capacityFirst or granted > 0)
    if gate ~= nil then
      if BUDGET_SPENT then rejectOverBudgetHeads(caller, own) end
      return gate, own
    end
    local wakeAt = nil
    for _, lane in ipairs(ORDER) do
      local took = takeHead(HEADS[lane][1], caller, own, HEADS[lane][2] + (lane - 1) * LANE_SCALE)
      if took <= TOOK_GRANTED then
        if took == TOOK_GRANTED then granted = granted + 1 else dropped = dropped + 1 end
        HEADS[lane] = nil
        wakeAt = nil
        break
      end
      if wakeAt == nil or took < wakeAt then wakeAt = took end
    end
    if wakeAt ~= nil then return math.ceil(wakeAt), own end
  end
  return NOW_MS, own -- the limit was reached: whoever reads this pumps again at once
end

-- Grants head waiters in (priority, sequence) order while they fit. A grant for `caller`'s own
-- waiters is returned (no extra round trip); others are published on their owner's channel and kept
-- in <p>:granted until released, for an owner that missed its message.
-- Returns wakeAtMs (0: nobody waits) and the caller's grants as 'waiterId fence expiresAt grantedAt'.
local function pump(caller, capacityFirst)
  if #CFG.positions > 1 then return pumpLanes(caller, capacityFirst) end
  local own = {}
  local granted, dropped = 0, 0
  while granted < PUMP_GRANTS_MAX and dropped < PUMP_DROPS_MAX do
    local gate = roundGate(fetchHead, capacityFirst or granted > 0)
    if gate ~= nil then
      if BUDGET_SPENT then rejectOverBudgetHeads(caller, own) end
      return gate, own
    end
    local took = takeHead(HEAD, caller, own, HEAD_SCORE)
    if took > TOOK_GRANTED then return math.ceil(took), own end
    if took == TOOK_GRANTED then granted = granted + 1 else dropped = dropped + 1 end
  end
  return NOW_MS, own -- the limit was reached: whoever reads this pumps again at once
end

-- Reads ARGV[from], ARGV[from+1], … as (dimension, number) pairs, `count` of them (read only: no
-- count shares NO_COST).
local function readCost(from, count)
  if count == 0 then return NO_COST end
  local cost = {}
  for i = 0, count - 1 do
    cost[ARGV[from + 2 * i]] = tonumber(ARGV[from + 2 * i + 1])
  end
  return cost
end
