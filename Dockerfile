# One image recipe for every Tollgate service; the build argument SERVICE picks which:
#   docker build --build-arg SERVICE=worker -t tollgate-worker .      (also: gateway, mock-anthropic)
# docker-compose.yml builds all three from here. The build context is the repository root.
#
# Stages: manifests (package.json files only, for a cached install) → build (all deps, turbo builds the service and the
# workspaces it depends on) → deps (production dependencies of that one service) → runtime (node:20-slim, non-root, tini).

ARG NODE_IMAGE=node:20-slim

FROM ${NODE_IMAGE} AS manifests
WORKDIR /app
COPY . .
# Keep only the manifests, and drop each workspace's devDependencies so that the production install below does not pull
# in other workspaces (mock-anthropic, test-support) that a service lists only for its tests.
RUN find . -type f ! -name package.json ! -name package-lock.json ! -name .npmrc -delete \
 && node -e 'const fs = require("node:fs"); \
      for (const file of require("node:child_process").execSync("find . -mindepth 2 -name package.json").toString().trim().split("\n")) { \
        const manifest = JSON.parse(fs.readFileSync(file, "utf8")); delete manifest.devDependencies; \
        fs.writeFileSync(file, JSON.stringify(manifest, null, 2)); }'

FROM ${NODE_IMAGE} AS build
ARG SERVICE
WORKDIR /app
COPY . .
RUN test -n "${SERVICE}" || (echo 'set --build-arg SERVICE=worker|gateway|mock-anthropic' >&2; exit 1)
RUN npm ci --ignore-scripts --no-audit --no-fund
RUN npx turbo run build --filter="./services/${SERVICE}..."
# Every dist/ folder that was built, at the same paths, and nothing else.
RUN mkdir /out && for dir in packages/* services/*; do \
      if [ -d "$dir/dist" ]; then mkdir -p "/out/$dir" && cp -r "$dir/dist" "/out/$dir/dist"; fi; \
    done

FROM ${NODE_IMAGE} AS deps
ARG SERVICE
WORKDIR /app
COPY --from=manifests /app ./
RUN npm ci --omit=dev --workspace "services/${SERVICE}" --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ARG SERVICE
# tini is PID 1: it forwards SIGTERM to node (which drains) and reaps zombies.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app ./
COPY --from=build /out ./
WORKDIR /app/services/${SERVICE}
USER node
ENTRYPOINT ["/usr/bin/tini", "--"]
# The same command as the workspace's `npm start`.
CMD ["node", "dist/main.js"]
