--[[ heartbeat.v1.lua (function tollgate_heartbeat_v1_<hash>): one call per process per heartbeat: marks the process alive, extends every
  lease it holds, reports the ones already gone, and pumps (a safety net for lost timers).
  KEYS[1]  '{tollgate:<name>}' key prefix
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string
  ARGV[3…] permitId       the leases this process holds (at most HEARTBEAT_IDS_MAX per call)
  Returns  {wasAlive 0|1, wakeAtMs, nowMs, {ownGrant…}, {lostPermitId…}} | {-1, epoch}
           wasAlive 0: the owner key had expired (the process was frozen or cut off): its queued
           waiters may have been dropped, so the client submits them again.
]]
local function heartbeat_v1(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  reclaim() -- before renewing: an expired lease must be reported lost, not revived
  local owner = ARGV[2]
  local ownerKey = kOwner(owner)
  local wasAlive = redis.call('EXISTS', ownerKey)
  redis.call('SET', ownerKey, '1', 'PX', CFG.leaseTtlMs)
  local lost = {}
  local expiresAt = NOW_MS + CFG.leaseTtlMs
  for i = 3, #ARGV do
    if redis.call('ZADD', K_LEASES, 'XX', 'CH', expiresAt, ARGV[i]) == 0 and
       not redis.call('ZSCORE', K_LEASES, ARGV[i]) then
      table.insert(lost, ARGV[i])
    end
  end
  local wake, own = pump(owner)
  return { wasAlive, wake, NOW_MS, own, lost }
end
redis.register_function('tollgate_heartbeat_v1_{{hash}}', heartbeat_v1)
