--[[ cancel.v1.lua: a waiter leaves the queue (abort, timeout). If it was granted in the meantime,
  that grant is released here with its whole cost refunded (nothing was sent on it).
  KEYS[1]  '{tollgate:<name>}' key prefix
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string
  ARGV[3]  waiterId       string
  ARGV[4]  costCount      integer ≥ 0, number of (dimension, amount) pairs that follow
  ARGV[5…] dimension, amount
  Returns  {state, wakeAtMs, nowMs, {ownGrant…}}  state 0 = was not there, 1 = left the queue,
                                                  2 = was granted and is now released
           {-1, epoch}
]]
--!include prelude.lua
local failure = begin(ARGV[1])
if failure then return failure end

local owner, waiterId = ARGV[2], ARGV[3]
local state = 0
if redis.call('ZREM', K_WAITING, waiterId) == 1 then
  redis.call('HDEL', K_WAITER_INFO, waiterId)
  state = 1
elseif redis.call('ZREM', K_LEASES, waiterId) == 1 then
  INFLIGHT = INFLIGHT - 1
  local cost = readCost(5, tonumber(ARGV[4]))
  for _, dim in ipairs(CFG.dims) do
    local amount = cost[dim] or 0
    if amount ~= 0 then
      local tokens = bucketTokens(dim) + amount
      if tokens > CFG.cap[dim] then tokens = CFG.cap[dim] end
      setTokens(dim, tokens)
    end
  end
  state = 2
end
local wake, own = pump(owner)
return { state, wake, NOW_MS, own }
