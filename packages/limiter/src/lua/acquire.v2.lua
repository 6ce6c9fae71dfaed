--[[ acquire.v2.lua (function tollgate_acquire_v2_<hash>): grants a permit now, or queues the waiter in (priority, arrival) order.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string, the dataset epoch the client knows
  ARGV[2]  ownerId        string, the calling process
  ARGV[3]  waiterId       string, '<ownerId>:<n>', unique per attempt; becomes the permit id
  ARGV[4]  priority       integer 0..9 (0 first)
  ARGV[5]  timeoutMs      integer 0..2^31−1, 0 = no server-side deadline
  ARGV[6]  previous       string, the waiter's queue member when this is a re-submission, else ''
  ARGV[7]  pool           string, the pool the waiter queues in: one of the config's `lanes`, or '' for
                          a limiter without pools; its cost names only that pool's buckets ('<pool>/<dim>')
  ARGV[8]  group          string, the waiter's group (a tenant; '*' for none) in a limiter whose
                          fleet limits have groups, else '' (then waiters queue in arrival order)
  ARGV[9]  step           integer 1..10^9: how far a queued waiter of the group moves its group's
                          finish tag (1000 / weight; 0 with group ''); see fairTag
  ARGV[10] costCount      integer 0..64, number of (dimension, amount) pairs that follow
  ARGV[11…] dimension, amount  amount a finite number ≥ 0; a dimension '~<group>/<bucket>' is one of
                          the group's budgets (the client charges every budget of its group, and
                          only those: its view of the limits is checked here)
  ARGV[6…10] may be left off from the first one on when every one left off is its default ('', '',
                          '', 0, 0): the client sends 5 arguments for a call with no cost, pool or group
  Arguments out of these ranges are refused ({-4, field}) before anything is written, so nothing one
  caller sends can leave an entry that other processes' pumps fail on.
  Returns  {1, fence, expiresAtMs, nowMs}                granted now (also a re-submitted waiter that was
                                                         granted already: the same lease, a new fence)
           {0, wakeAtMs, nowMs, {ownGrant…}, member}     queued; wakeAtMs 0 = only a release can help;
                                                         ownGrant 'waiterId fence expiresAtMs grantedAtMs'
                                                         (may include this waiter, granted by the pump);
                                                         member: the queue entry, for cancel
           {-1, epoch}                                   resync needed (prelude)
           {-2, dimension, capacity}                     cost exceeds the bucket's capacity: never grantable
           {-3, dimension}                               dimension not configured
           {-4, field}                                   an argument out of range: 'priority',
                                                         'timeoutMs', 'cost', 'waiterId', 'group'
                                                         or 'pool' (not a configured pool, or a cost
                                                         outside it, or budgets that are not its
                                                         group's in force: the client's view is stale)
           {-5, dimension, retryAfterMs}                 a budget of its group ('~<group>/<bucket>')
                                                         cannot cover its amount now: refused at once
                                                         (never queued); retryAfterMs: until it
                                                         will have refilled enough (Redis time)
]]
local COST_DIMENSIONS_MAX = 64
local COST_FROM = 11 -- ARGV index of the first (dimension, amount) pair
local STEP_MAX = 1000000000
-- Fair tags stay below the priority's band: beyond this (about 10^10 grants of weight 1 in one band)
-- a group's waiters share the band's last tag and go in member order.
local TAG_MAX = PRIORITY_SCALE - STEP_MAX - 1

-- An integer from 0 to max (nil, NaN, infinities and fractions are not: NaN fails every comparison).
local function inRange(value, max) return value ~= nil and value >= 0 and value <= max and value % 1 == 0 end

-- nil when the arguments are in range, else the name of the first field that is not.
local function badAcquireArgument(waiterId, priority, timeoutMs, pool, group, step, costCount)
  -- '^[^%s:]+:%S+$' (its first colon neither first nor last, no space) in fewer steps of Lua's matcher
  local colon = string.find(waiterId, ':', 1, true)
  if colon == nil or colon == 1 or colon == #waiterId or not string.find(waiterId, '^%S+$') then return 'waiterId' end
  if group ~= '' and (not string.find(group, '^[%w._*-]+$') or #group > 64 or not inRange(step, STEP_MAX) or step < 1) then return 'group' end
  -- inRange's tests written out for the three fields every call sends (a Lua call each is most of their cost)
  if priority == nil or not (priority >= 0 and priority <= 9 and priority % 1 == 0) then return 'priority' end
  if timeoutMs == nil or not (timeoutMs >= 0 and timeoutMs <= TIMEOUT_MS_MAX and timeoutMs % 1 == 0) then return 'timeoutMs' end
  if costCount == nil or not (costCount >= 0 and costCount <= COST_DIMENSIONS_MAX and costCount % 1 == 0) then return 'cost' end
  if (pool == '' and #CFG.lanes > 0) or (pool ~= '' and CFG.laneIndex[pool] == nil) then return 'pool' end
  if costCount == 0 then return nil end
  local prefix = pool .. '/'
  for i = 0, costCount - 1 do
    local dim = ARGV[COST_FROM + 2 * i]
    if string.byte(dim) == GROUP_BUCKET_BYTE then
      -- a group's budget: only the caller's own group's
      if group == '' or string.sub(dim, 2, #group + 2) ~= group .. '/' then return 'cost' end
    -- a pool's waiter takes only its own pool's buckets (else it could wait on another pool's)
    elseif pool ~= '' and string.sub(dim, 1, #prefix) ~= prefix then return 'pool' end
    local text = ARGV[COST_FROM + 1 + 2 * i]
    local amount = tonumber(text)
    -- a plain number (it is copied into the queue member as sent); amount ~= amount: NaN; an
    -- infinite amount is caught by the capacity check
    if amount == nil or amount ~= amount or amount < 0 or not string.find(text, '^[%d.eE+-]+$') then return 'cost' end
  end
  return nil
end

-- Start-time fair queuing between groups (DESIGN §9), within one (pool, priority) band of the queue:
-- a queued waiter's score in its band is its group's start tag S = max(V, F[group]), and F[group]
-- becomes S + step (step = 1000 / weight). V, the band's virtual time, is the tag of the band's head
-- (the next to be served), never below what it was at the last enqueue ('vt@<pool>@<priority>'), so
-- a group that just arrived starts at V: it is served after at most about one waiter per weight unit
-- of each busy group, not after their whole backlog. A group's waiters keep their order (F rises).
-- Costs three commands, only for a waiter that queues, only in a limiter with groups.
local function fairTag(pool, priority, group, step)
  local low = (CFG.laneIndex[pool] or 0) * LANE_SCALE + priority * PRIORITY_SCALE
  local vtField, ftField = 'vt@' .. pool .. '@' .. priority, 'ft@' .. pool .. '@' .. priority .. '@' .. group
  local stored = redis.call('HMGET', K_CONFIG, vtField, ftField)
  local virtual = (stored[1] or 0) + 0
  local head = redis.call('ZRANGE', K_WAITING, int(low), '(' .. int(low + PRIORITY_SCALE), 'BYSCORE', 'LIMIT', '0', '1', 'WITHSCORES')
  if #head > 0 and head[2] - low > virtual then virtual = head[2] - low end
  local tag = (stored[2] or 0) + 0
  if virtual > tag then tag = virtual end
  if tag > TAG_MAX then tag = TAG_MAX end
  redis.call('HSET', K_CONFIG, vtField, int(virtual), ftField, int(tag + step))
  return low + tag
end

local function acquire_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local owner, waiterId, previous, pool = ARGV[2], ARGV[3], ARGV[6] or '', ARGV[7] or ''
  local timeoutMs = SMALL_INTEGER[ARGV[5]] or tonumber(ARGV[5]) -- '0': no deadline, the most common
  local costText, stepText = ARGV[10] or '0', ARGV[9] or '0' -- left off: the defaults (header)
  local priority, costCount = SMALL_INTEGER[ARGV[4]] or tonumber(ARGV[4]), SMALL_INTEGER[costText] or tonumber(costText)
  local group, step = ARGV[8] or '', SMALL_INTEGER[stepText] or tonumber(stepText)
  -- a re-submission first: its grant or queue entry stands whatever changed since it was made (an apply
  -- that removed its pool or lowered a capacity: the queue entry is then rejected by a message)
  if previous ~= '' then
    local expiresAt = redis.call('ZSCORE', K_LEASES, waiterId)
    -- granted earlier: its grant may have been lost with a reply (or is on the grants list), so it is
    -- answered again, with a new fence (fences only rise); the client keeps whichever copy comes first
    if expiresAt then return { 1, redis.call('HINCRBY', K_CONFIG, 'fence', '1'), expiresAt + 0, NOW_MS } end
    if redis.call('ZSCORE', K_WAITING, previous) then
      local wake, own = pump(owner)
      return { 0, wake, NOW_MS, own, previous }
    end
  end

  local bad = badAcquireArgument(waiterId, priority, timeoutMs, pool, group, step, costCount)
  if bad then return { -4, bad } end
  local cost = readCost(COST_FROM, costCount)
  local budgets = 0
  if costCount > 0 then -- (else cost is NO_COST: no pairs() call)
    for dim, amount in pairs(cost) do
      local cap = CFG.cap[dim]
      local budget = string.byte(dim) == GROUP_BUCKET_BYTE
      if cap == nil and budget then return { -4, 'pool' } end -- a budget an apply removed: the client reads the limits again
      if cap == nil then return { -3, dim } end
      if amount > cap then return { -2, dim, tostring(cap) } end
      if budget then budgets = budgets + 1 end
    end
  end
  if CFG.budgets then
    -- every budget of its group, or the client does not know an apply that added one
    local own = CFG.groupDims[group]
    if budgets ~= (own and #own or 0) then return { -4, 'pool' } end
    local short, waitMs = budgetShort(cost)
    if short ~= nil then return { -5, short, waitMs } end
  elseif budgets > 0 then return { -4, 'pool' } end

  -- granted at once only when nobody waits, in any pool: a waiter of another pool whose wait just
  -- ended (its refill came, no pump yet) is granted first by the pump below. The slot and the buckets
  -- first: when they block, it queues whoever waits, and the pump reuses what they read (no ZCARD)
  if blockedUntil(priority, cost, pool) == 0 and redis.call('ZCARD', K_WAITING) == 0 then
    local fence, expiresAt = grant(waiterId, cost)
    return { 1, fence, expiresAt, NOW_MS }
  end

  local deadline = 0
  if timeoutMs > 0 then deadline = NOW_MS + timeoutMs end
  local member = waiterMember(waiterId, priority, deadline, pool, COST_FROM, costCount)
  local score
  if group == '' then score = waiterScore(pool, priority, redis.call('HINCRBY', K_CONFIG, 'seq', '1'))
  else score = fairTag(pool, priority, group, step) end
  redis.call('ZADD', K_WAITING, int(score), member)
  local wake, own = pump(owner, true)
  return { 0, wake, NOW_MS, own, member }
end
redis.register_function('tollgate_acquire_v2_{{hash}}', acquire_v2)
