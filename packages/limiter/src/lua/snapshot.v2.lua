--[[ snapshot.v2.lua (function tollgate_snapshot_v2_<hash>): reads the limiter's state (for dashboards, metrics and tests). Writes nothing
  but the reclaim of expired leases that every script does.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  leasesMax      integer ≥ 0, how many leases to list (soonest expiry first)
  Returns  {nowMs, inFlight, concurrency, effective, waiting, pausedUntilMs,
            {dim, tokens (string), capacity (string), refillPerMs (string)}…, {permitId, expiresAtMs}…,
            {pool, pausedUntilMs, waiting}… (one per pool, in lane order; none without pools),
            {dim '~<group>/<bucket>', tokens, capacity, refillPerMs}… (the groups' budgets)}
           | {-1, epoch}
]]
local function snapshot_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  reclaim()
  local buckets = {}
  for _, dim in ipairs(CFG.dims) do
    table.insert(buckets, { dim, tostring(bucketTokens(dim)), tostring(CFG.cap[dim]), tostring(CFG.rate[dim]) })
  end
  local leases = {}
  local listed = redis.call('ZRANGE', K_LEASES, 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
  for i = 1, #listed, 2 do table.insert(leases, { listed[i], tonumber(listed[i + 1]) }) end
  local pools = {}
  for _, lane in ipairs(CFG.lanes) do
    local low, high = laneRange(CFG.laneIndex[lane])
    table.insert(pools, { lane, math.floor(CFG.lanePausedUntil[lane]), redis.call('ZCOUNT', K_WAITING, low, high) })
  end
  local budgets = {}
  for _, dims in pairs(CFG.groupDims) do
    for _, dim in ipairs(dims) do
      table.insert(budgets, { dim, tostring(bucketTokens(dim)), tostring(CFG.cap[dim]), tostring(CFG.rate[dim]) })
    end
  end
  return { NOW_MS, INFLIGHT, CFG.concurrency, CFG.effective, redis.call('ZCARD', K_WAITING),
           math.floor(CFG.pausedUntil), buckets, leases, pools, budgets }
end
redis.register_function('tollgate_snapshot_v2_{{hash}}', snapshot_v2)
