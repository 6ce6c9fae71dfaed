--[[ configure.v2.lua (function tollgate_configure_v2_<hash>): joins a process to the fleet's limits (at ready(), on a resync, on
  an explicit apply), and re-registers the leases it holds when Redis lost its data.
  The fleet's limits change only by an explicit apply (DESIGN §8): mode 'adopt' writes the process's
  limits only when the dataset has none (first boot, or after data loss); mode 'apply' writes them
  whatever the fleet has. Either way the reply carries the fleet's limits, which the process runs with.
  A dataset created in a database that lost its data (no `tollgate:datasets` marker; on a Cluster
  always) starts with grants paused for `graceMs`, whoever creates it, so that processes still holding
  permits from before the loss re-register them before anyone else is granted (G1 across data loss).
  KEYS[1…6] the limiter's keys (prelude.lua)
  KEYS[7]  'tollgate:datasets' (single Redis only; absent on a Cluster, where every new dataset pauses)
  ARGV[1]  newEpoch       string, used only when the dataset has none yet
  ARGV[2]  mode           'adopt' | 'apply'
  ARGV[3]  ownerId        string
  ARGV[4]  fenceFloor     integer ≥ 0, the highest fence this process has seen: fences continue above it
  ARGV[5]  graceMs        integer ≥ 0, the pause of a dataset created after data loss (the fleet's
                          re-registration window: RESYNC_PAUSE_HEARTBEATS × heartbeatMs)
  ARGV[6]  limitsJson     string, the process's limits as canonical JSON (stored as the fleet's when written)
  ARGV[7]  limitsHash     string, a hash of limitsJson (two processes with equal limits send equal hashes)
  ARGV[8]  concurrency    integer ≥ 0 (0 = no concurrency limit)
  ARGV[9]  leaseTtlMs     integer ≥ 1
  ARGV[10] reserve        string 'maxPriority:slots;…' ('' = none)
  ARGV[11] pools          string, the pools 'name,…' ('' = no pools, one queue); each keeps the lane it
                          has (a new one takes a free lane, or a new one at the end; a removed one leaves
                          its lane marked removed until its waiters are gone: prelude.lua `lanes`)
  ARGV[12] dimCount       integer ≥ 0; then dimCount (dimension, capacity, refillPerMs) triples
  ARGV[…]  budgetCount    integer ≥ 0; then budgetCount (dimension '~<group>/<bucket>', capacity,
                          refillPerMs) triples: the groups' budgets. A budget whose capacity changes
                          keeps what was spent: its tokens move by the change (a raise lets calls
                          through at once; a cut may leave a debt)
  ARGV[…]  permitId, remainingTtlMs   pairs: leases this process holds, to re-register
  Returns  {epoch, nowMs, created 0|1, applied 0|1, version, limitsJson, limitsHash, wakeAtMs, nowMs, {ownGrant…}, wasAlive 0|1}
           version: the fleet limits' revision (rises with every write); limitsJson/limitsHash: the
           fleet's limits in force; wakeAtMs/ownGrant as pump (after an apply, waiters whose cost no
           longer fits a lowered capacity, or whose pool is gone, are rejected (the first
           APPLY_SCAN_MAX; the pump rejects the others when they reach the head), and a raise
           admits waiters at once);
           wasAlive as heartbeat: 0 when the owner's mark had passed (the process was presumed dead,
           so a pump may have dropped its queued waiters; this call marked it alive again)
]]
local APPLY_SCAN_MAX = 1000 -- queued waiters an apply checks against lowered capacities (the pump checks the rest at the head)

-- After an apply, for the first APPLY_SCAN_MAX queued waiters: rejects those whose pool the limits no
-- longer have (dimension '@<pool>', capacity 0), whose cost a lowered capacity can never hold, or
-- whose group's budget a cut no longer covers.
local function recheckWaiting(caller, own)
  local members = redis.call('ZRANGE', K_WAITING, '0', int(APPLY_SCAN_MAX - 1))
  for _, member in ipairs(members) do
    local waiterId, owner, _, _, _, cost, lane = parseWaiter(member)
    if waiterId ~= nil then
      local dim, cap = poolGoneOrTooBig(lane, cost)
      local short, waitMs = nil, 0
      if dim == nil and CFG.budgets then short, waitMs = budgetShort(cost) end -- a cut budget no longer covers it
      if dim ~= nil then
        redis.call('ZREM', K_WAITING, member)
        notify(owner, caller, own, rejection(waiterId, dim, cap))
      elseif short ~= nil then
        redis.call('ZREM', K_WAITING, member)
        notify(owner, caller, own, overBudget(waiterId, short, waitMs))
      end
    end
  end
end

-- The lanes after an apply of `pools` ('name,…'), from the lanes in force (prelude.lua `lanes`): a pool
-- that stays keeps its lane; a removed one's lane is marked removed, and freed once no waiter is left
-- in it; a new pool takes the first free lane, else a new lane at the end (with every lane taken, the
-- first removed one: its waiters are rejected when they reach the head). Also clears the pause of each
-- pool it removes (one added again later starts unpaused).
local function placeLanes(pools)
  local positions = {}
  local old = redis.call('HGET', K_CONFIG, 'lanes') or ''
  if old ~= '' then for entry in string.gmatch(old .. ',', '([^,]*),') do table.insert(positions, entry) end end
  local wanted, placed = {}, {}
  for pool in string.gmatch(pools, '[^,]+') do wanted[pool] = true end
  for i, entry in ipairs(positions) do
    local name = entry
    if string.sub(entry, 1, 1) == REMOVED then name = string.sub(entry, 2) end
    if name ~= '' and wanted[name] and not placed[name] then
      positions[i], placed[name] = name, true
    elseif name ~= '' then
      if name == entry then redis.call('HDEL', K_CONFIG, 'pausedUntil@' .. name) end -- removed now
      positions[i] = REMOVED .. name
      local low = (i - 1) * LANE_SCALE
      local high = '+inf'
      if i < #positions then high = '(' .. int(low + LANE_SCALE) end
      if redis.call('ZCOUNT', K_WAITING, int(low), high) == 0 then positions[i] = '' end
    end
  end
  for pool in string.gmatch(pools, '[^,]+') do
    if not placed[pool] then
      local at = nil
      for i, entry in ipairs(positions) do if entry == '' then at = i; break end end
      if at == nil and #positions >= LANES_MAX then
        for i, entry in ipairs(positions) do if string.sub(entry, 1, 1) == REMOVED then at = i; break end end
      end
      if at == nil then table.insert(positions, pool) else positions[at] = pool end
      placed[pool] = true
    end
  end
  while #positions > 0 and positions[#positions] == '' do table.remove(positions) end
  return table.concat(positions, ',')
end

-- A group budget's tokens when an apply moves its capacity from `oldCap` to `newCap` (both set): refilled
-- to now at the old rate, then moved by the change, so what was spent stays spent; written with ts = now.
local function moveBudget(dim, oldCap, oldRate, newCap)
  local stored = redis.call('HMGET', K_CONFIG, 't:' .. dim, 'ts:' .. dim)
  if not stored[1] then return end -- never spent: full at any capacity
  local tokens, stamp = tonumber(stored[1]), tonumber(stored[2])
  if stamp < NOW then tokens = tokens + (NOW - stamp) * oldRate end
  if tokens > oldCap then tokens = oldCap end
  tokens = tokens + newCap - oldCap
  if tokens > newCap then tokens = newCap end
  if stamp < NOW then stamp = NOW end
  redis.call('HSET', K_CONFIG, 't:' .. dim, tokens, 'ts:' .. dim, stamp)
end

local function writeLimits()
  local concurrency = tonumber(ARGV[8])
  local effective = tonumber(redis.call('HGET', K_CONFIG, 'effective') or concurrency)
  local previous = tonumber(redis.call('HGET', K_CONFIG, 'concurrency') or concurrency)
  if effective >= previous or effective > concurrency then effective = concurrency end -- keep an adaptive decrease
  local dimCount = tonumber(ARGV[12])
  local dims = {}
  local fields = { 'concurrency', concurrency, 'effective', effective, 'leaseTtlMs', ARGV[9], 'reserve', ARGV[10],
                   'lanes', placeLanes(ARGV[11]), 'limits', ARGV[6], 'limitsHash', ARGV[7],
                   -- fair share between groups (prelude.lua `fair`) when the limits name groups
                   'fair', string.find(ARGV[6], '"groups":', 1, true) and '1' or '0' }
  for i = 0, dimCount - 1 do
    local dim = ARGV[13 + 3 * i]
    table.insert(dims, dim)
    table.insert(fields, 'cap:' .. dim); table.insert(fields, ARGV[14 + 3 * i])
    table.insert(fields, 'rate:' .. dim); table.insert(fields, ARGV[15 + 3 * i])
  end
  table.insert(fields, 'dims'); table.insert(fields, table.concat(dims, ','))
  local budgetAt = 13 + 3 * dimCount
  local budgetCount = tonumber(ARGV[budgetAt])
  local budgets = {}
  for i = 0, budgetCount - 1 do
    local dim, cap, rate = ARGV[budgetAt + 1 + 3 * i], ARGV[budgetAt + 2 + 3 * i], ARGV[budgetAt + 3 + 3 * i]
    table.insert(budgets, dim)
    local old = redis.call('HMGET', K_CONFIG, 'cap:' .. dim, 'rate:' .. dim)
    if old[1] and tonumber(old[1]) ~= tonumber(cap) then moveBudget(dim, tonumber(old[1]), tonumber(old[2]), tonumber(cap)) end
    table.insert(fields, 'cap:' .. dim); table.insert(fields, cap)
    table.insert(fields, 'rate:' .. dim); table.insert(fields, rate)
  end
  table.insert(fields, 'gdims'); table.insert(fields, table.concat(budgets, ','))
  redis.call('HSET', K_CONFIG, unpack(fields))
  redis.call('HINCRBY', K_CONFIG, 'version', 1) -- every process re-parses the static config
  return budgetAt + 1 + 3 * budgetCount
end

local function configure_v2(keys, args)
  start(keys, args)
  local owner, mode = ARGV[3], ARGV[2]
  local stored = redis.call('HMGET', K_CONFIG, 'epoch', 'limitsHash')
  local created, applied = 0, 0
  if not stored[1] then
    created = 1
    redis.call('HSET', K_CONFIG, 'epoch', ARGV[1])
    local marker = keys[FUNCTION_KEYS + 1]
    local databaseIsNew = marker == nil or redis.call('SET', marker, ARGV[1], 'NX') ~= false
    local graceMs = tonumber(ARGV[5])
    if databaseIsNew and graceMs > 0 then redis.call('HSET', K_CONFIG, 'pausedUntil', int(NOW_MS + graceMs)) end
  elseif keys[FUNCTION_KEYS + 1] ~= nil then
    redis.call('SET', keys[FUNCTION_KEYS + 1], stored[1], 'NX') -- a database that predates the marker
  end

  local budgetAt = 13 + 3 * tonumber(ARGV[12])
  local first = budgetAt + 1 + 3 * tonumber(ARGV[budgetAt])
  if created == 1 or not stored[2] or (mode == 'apply' and stored[2] ~= ARGV[7]) then
    first = writeLimits()
    applied = 1
  end

  -- fences rise across data loss: a new dataset starts at Redis time in µs (more than any dataset
  -- before it could have counted to, at less than one grant per µs), and never below a fence seen
  local fence = tonumber(redis.call('HGET', K_CONFIG, 'fence') or '0')
  local floor = tonumber(ARGV[4])
  if created == 1 and NOW_US > floor then floor = NOW_US end
  if floor > fence then redis.call('HSET', K_CONFIG, 'fence', int(floor)) end

  useConfig(readLive())
  local wasAlive = 0
  if markAlive(owner, NOW_MS + CFG.leaseTtlMs) then wasAlive = 1 end
  for i = first, #ARGV - 1, 2 do
    redis.call('ZADD', K_LEASES, NOW_MS + tonumber(ARGV[i + 1]), ARGV[i])
  end
  leasesChanged()

  local wake, own = 0, {}
  if applied == 1 and created == 0 then
    recheckWaiting(owner, own)
    local pumpedOwn
    wake, pumpedOwn = pump(owner)
    for _, message in ipairs(pumpedOwn) do table.insert(own, message) end
  end
  local fleet = redis.call('HMGET', K_CONFIG, 'epoch', 'version', 'limits', 'limitsHash')
  return { fleet[1], NOW_MS, created, applied, fleet[2], fleet[3], fleet[4], wake, NOW_MS, own, wasAlive }
end
redis.register_function('tollgate_configure_v2_{{hash}}', configure_v2)
