--[[ configure.v1.lua (function tollgate_configure_v1_<hash>): writes a process's limits (at ready()), and re-registers its leases when
  Redis lost its data (no epoch), pausing grants for one heartbeat while the fleet re-registers.
  KEYS[1]  '{tollgate:<name>}' key prefix
  ARGV[1]  newEpoch       string, used only when the dataset has none yet
  ARGV[2]  concurrency    integer ≥ 0 (0 = no concurrency limit)
  ARGV[3]  leaseTtlMs     integer ≥ 1
  ARGV[4]  reserve        string 'maxPriority:slots;…' ('' = none)
  ARGV[5]  resyncPauseMs  integer ≥ 0, a pause of grants (> 0 on a resync after Redis lost its data)
  ARGV[6]  ownerId        string
  ARGV[7]  dimCount       integer ≥ 0; then dimCount (dimension, capacity, refillPerMs) triples
  ARGV[…]  permitId, remainingTtlMs   pairs: leases this process holds, to re-register
  Returns  {epoch, nowMs, created 0|1}
]]
local function configure_v1(keys, args)
  start(keys, args)
  local existingEpoch = redis.call('HGET', K_CONFIG, 'epoch')
  local created = 0
  if not existingEpoch then
    redis.call('HSET', K_CONFIG, 'epoch', ARGV[1])
    existingEpoch = ARGV[1]
    created = 1
  end

  local concurrency = tonumber(ARGV[2])
  local effective = tonumber(redis.call('HGET', K_CONFIG, 'effective') or concurrency)
  local previous = tonumber(redis.call('HGET', K_CONFIG, 'concurrency') or concurrency)
  if effective >= previous or effective > concurrency then effective = concurrency end -- keep an adaptive decrease
  local dimCount = tonumber(ARGV[7])
  local dims = {}
  local fields = { 'concurrency', concurrency, 'effective', effective, 'leaseTtlMs', ARGV[3], 'reserve', ARGV[4] }
  for i = 0, dimCount - 1 do
    local dim = ARGV[8 + 3 * i]
    table.insert(dims, dim)
    table.insert(fields, 'cap:' .. dim); table.insert(fields, ARGV[9 + 3 * i])
    table.insert(fields, 'rate:' .. dim); table.insert(fields, ARGV[10 + 3 * i])
  end
  table.insert(fields, 'dims'); table.insert(fields, table.concat(dims, ','))
  redis.call('HSET', K_CONFIG, unpack(fields))
  redis.call('HINCRBY', K_CONFIG, 'version', 1) -- every process re-parses the static config
  redis.call('SET', kOwner(ARGV[6]), '1', 'PX', tonumber(ARGV[3]))

  local first = 8 + 3 * dimCount
  for i = first, #ARGV - 1, 2 do
    redis.call('ZADD', K_LEASES, NOW_MS + tonumber(ARGV[i + 1]), ARGV[i])
  end
  local resyncPauseMs = tonumber(ARGV[5])
  if resyncPauseMs > 0 then -- a resync: hold grants until every live process has re-registered
    local pausedUntil = tonumber(redis.call('HGET', K_CONFIG, 'pausedUntil') or '0')
    if NOW_MS + resyncPauseMs > pausedUntil then redis.call('HSET', K_CONFIG, 'pausedUntil', NOW_MS + resyncPauseMs) end
  end
  return { existingEpoch, NOW_MS, created }
end
redis.register_function('tollgate_configure_v1_{{hash}}', configure_v1)
