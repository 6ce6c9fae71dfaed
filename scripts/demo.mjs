// The end-to-end demo lands with the "docker compose, npm run demo" issue; until then this says so.
console.log('npm run demo: coming soon. The demo (mock API, Redis, 4 workers, live progress) is not built yet.');
console.log('What exists today: the Redis limiter (packages/limiter) and its tests: run `npm test`.');
