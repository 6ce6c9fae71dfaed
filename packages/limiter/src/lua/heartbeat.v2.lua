--[[ heartbeat.v2.lua (function tollgate_heartbeat_v2_<hash>): one call per process per heartbeat: marks the process alive, extends every
  lease it holds, reports the ones already gone, tells the process the fleet limits' revision (hot
  reload within one heartbeat), and pumps (a safety net for lost timers).
  A lease the process believes live but Redis no longer has (Redis lost it while keeping its epoch:
  an AOF `everysec` crash, a failover to a lagging replica) is registered again, so the fleet counts
  the work that may still run until the process releases it, and reported lost, so that work aborts
  (G7: another process may have been granted its slot meanwhile).
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string
  ARGV[3]  knownVersion   string, the limits revision the process runs with
  ARGV[4]  leaseCount     integer ≥ 0, number of permit ids that follow
  ARGV[5…] permitId       the leases this process holds and believes live (renewed in time; at most
                          HEARTBEAT_IDS_MAX per call); a lease it knows lost is never sent
  ARGV[…]  waiterId       then this process's waiters still waiting (at most HEARTBEAT_IDS_MAX): a
                          grant the pump kept for one of them (its message missed) comes back in ownGrant
  Returns  {wasAlive 0|1, wakeAtMs, nowMs, {ownGrant…}, {lostPermitId…}, version, limitsJson} | {-1, epoch}
           wasAlive 0: the owner key had expired (the process was frozen or cut off): its queued
           waiters may have been dropped, so the client submits them again.
           version: the fleet limits' revision; limitsJson: the fleet's limits when version differs
           from knownVersion, else ''.
]]
local function heartbeat_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  reclaim()
  local owner = ARGV[2]
  local wasAlive = 0
  if markAlive(owner, NOW_MS + CFG.leaseTtlMs) then wasAlive = 1 end
  redis.call('ZREMRANGEBYSCORE', K_OWNERS, '-inf', NOW - CFG.leaseTtlMs) -- processes gone for a lease
  local lost = {}
  local expiresText = int(NOW_MS + CFG.leaseTtlMs)
  local leasesEnd = 4 + tonumber(ARGV[4])
  for i = 5, leasesEnd do
    if redis.call('ZADD', K_LEASES, 'XX', 'CH', expiresText, ARGV[i]) == 0 and
       not redis.call('ZSCORE', K_LEASES, ARGV[i]) then
      redis.call('ZADD', K_LEASES, expiresText, ARGV[i]) -- counted again until released
      table.insert(lost, ARGV[i])
    end
  end
  leasesChanged()
  local wake, own = pump(owner)
  if #ARGV > leasesEnd then -- grants this process's waiters were sent, and may have missed
    local waiters = { unpack(ARGV, leasesEnd + 1) }
    local kept = redis.call('HMGET', K_GRANTED, unpack(waiters))
    for i, message in ipairs(kept) do
      if message then table.insert(own, waiters[i] .. ' ' .. message) end
    end
  end
  local limits = ''
  if CFG.version ~= ARGV[3] then limits = redis.call('HGET', K_CONFIG, 'limits') or '' end
  return { wasAlive, wake, NOW_MS, own, lost, CFG.version or '', limits }
end
redis.register_function('tollgate_heartbeat_v2_{{hash}}', heartbeat_v2)
