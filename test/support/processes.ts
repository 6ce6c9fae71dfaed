// Moved to @tollgate/test-support (packages/test-support/src/processes.ts), the project's one home for test helpers.
export {
  GATEWAY_ENTRY,
  MOCK_ENTRY,
  READY_TIMEOUT_MS,
  REPO_ROOT,
  STOP_GRACE_MS,
  WORKER_ENTRY,
  BUILT_ENV,
  entryCommand,
  spawnService,
  stopAllServices,
  type ReadyInfo,
  type ServiceProcess,
  type SpawnOptions,
} from '@tollgate/test-support';
