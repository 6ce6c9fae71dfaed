export { IDEMPOTENCY_HEADER, JOB_ID_HEADER, PRIORITY_HEADER, buildGateway, type Gateway } from './app.js';
export {
  GATEWAY_REDIS_OP_TIMEOUT_MS_DEFAULT,
  GATEWAY_REDIS_TIMEOUT_MS_DEFAULT,
  MAX_BODY_BYTES_DEFAULT,
  PORT_DEFAULT,
  TOKEN_LENGTH_MIN,
  WAIT_MS_DEFAULT,
  gatewayEnvSchema,
  parseGatewayEnv,
  type GatewayEnv,
} from './env.js';
export { FLEET_HISTORY_FRAMES, FLEET_SAMPLE_INTERVAL_MS, FleetMonitor, type FleetFrame } from './fleet.js';
export { TokenTable } from './auth.js';
export { dashboardHtml } from './dashboard.js';
