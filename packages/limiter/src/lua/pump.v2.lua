--[[ pump.v2.lua (function tollgate_pump_v2_<hash>): grants head waiters that fit now. Run at a wakeAtMs a script returned (a refill,
  the end of a pause, a lease expiry). Idempotent: several processes firing the same timer is harmless.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string, the calling process
  Returns  {wakeAtMs, nowMs, {ownGrant…}} | {-1, epoch}
]]
local function pump_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end
  local wake, own = pump(ARGV[2])
  return { wake, NOW_MS, own }
end
redis.register_function('tollgate_pump_v2_{{hash}}', pump_v2)
