--[[ acquire.v1.lua: grants a permit now, or queues the waiter in (priority, arrival) order.
  KEYS[1]  '{tollgate:<name>}' key prefix (see prelude.lua for the keys derived from it)
  ARGV[1]  epoch          string, the dataset epoch the client knows
  ARGV[2]  ownerId        string, the calling process
  ARGV[3]  waiterId       string, '<ownerId>:<n>', unique per attempt; becomes the permit id
  ARGV[4]  priority       integer 0..9 (0 first)
  ARGV[5]  timeoutMs      integer ≥ 0, 0 = no server-side deadline
  ARGV[6]  costCount      integer ≥ 0, number of (dimension, amount) pairs that follow
  ARGV[7…] dimension, amount   amount a number ≥ 0
  Returns  {1, fence, expiresAtMs, nowMs}                granted now
           {0, wakeAtMs, nowMs, {ownGrant…}}             queued; wakeAtMs 0 = only a release can help;
                                                         ownGrant 'waiterId fence expiresAtMs grantedAtMs'
                                                         (may include this waiter, granted by the pump)
           {2}                                           this waiter was granted already (re-submission)
           {-1, epoch}                                   resync needed (prelude)
           {-2, dimension, capacity}                     cost exceeds the bucket's capacity: never grantable
           {-3, dimension}                               dimension not configured
]]
--!include prelude.lua
local failure = begin(ARGV[1])
if failure then return failure end

local owner, waiterId, priority, timeoutMs = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local cost = readCost(7, tonumber(ARGV[6]))
for dim, amount in pairs(cost) do
  local cap = CFG.cap[dim]
  if cap == nil then return { -3, dim } end
  if amount > cap then return { -2, dim, tostring(cap) } end
end

if redis.call('ZSCORE', K_LEASES, waiterId) then return { 2 } end

if redis.call('ZCARD', K_WAITING) == 0 and blockedUntil(priority, cost) == 0 then
  local fence, expiresAt = grant(waiterId, cost)
  return { 1, fence, expiresAt, NOW_MS }
end

if not redis.call('ZSCORE', K_WAITING, waiterId) then
  local deadline = 0
  if timeoutMs > 0 then deadline = NOW_MS + timeoutMs end
  local sequence = redis.call('INCR', K_SEQ)
  redis.call('ZADD', K_WAITING, priority * PRIORITY_SCALE + sequence, waiterId)
  redis.call('HSET', K_WAITER_INFO, waiterId, cjson.encode({ o = owner, p = priority, d = deadline, c = cost }))
end
local wake, own = pump(owner)
return { 0, wake, NOW_MS, own }
