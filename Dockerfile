# pgferry as a container, run beside the source database.
#   docker build -t pgferry .
#   docker run -d --name pgferry -v pgferry-state:/state -p 8080:8080 \
#     -e PGFERRY_SOURCE_URL=... -e PGFERRY_TARGET_URL=... -e PGFERRY_API_TOKEN=... pgferry
# Two stages on Node 24 (the active LTS; --build-arg NODE_MAJOR=22 for the maintenance one) and the
# same Debian release: the build stage compiles the sources and better-sqlite3's native addon, the
# runtime stage (the same image family, slim) gets the compiled tree with production dependencies
# only, the PostgreSQL 17 client tools and tini. test/integration/dockerfile.test.ts replays this
# file step by step (no container engine on the test machines).
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-trixie AS build
WORKDIR /app
# Dependencies first, in a layer of their own that a change of the sources does not invalidate.
# Without scripts, since the package's `prepare` (the build) needs the sources; better-sqlite3's
# install script (its addon, compiled for this Node and glibc) is then run by name.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:${NODE_MAJOR}-trixie-slim
# tini as PID 1: it forwards SIGTERM to pgferry (which finishes its batch and exits 0) and reaps
# the pg_dump and psql it starts. pg_dump must be at least the source's major version: client tools
# 17 from the PostgreSQL project's Debian repository read every server up to 17.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tini \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && . /etc/os-release \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-17 \
 && apt-get purge -y curl \
 && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# The state file's directory, owned by the user pgferry runs as: a new named volume mounted there
# takes this ownership.
WORKDIR /state
RUN chown node:node .
VOLUME /state
WORKDIR /app
# Configured by environment: PGFERRY_SOURCE_URL, PGFERRY_TARGET_URL, PGFERRY_API_TOKEN (required
# for a non-loopback bind such as the default below), PGFERRY_JOBS, PGFERRY_MAX_SNAPSHOT_AGE,
# PGFERRY_LOG_LEVEL. Set the API's port with PGFERRY_HTTP (not --http): the health check reads it.
ENV PGFERRY_STATE=/state/pgferry-state.sqlite PGFERRY_PG_BIN=/usr/lib/postgresql/17/bin PGFERRY_HTTP=0.0.0.0:8080
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s CMD ["node", "/app/bin/healthcheck.js"]
# A young generation of 2 MB semi-spaces (V8's default grows to 16 MB): the copy's stream buffers
# are then collected sooner, and a long copy's RSS stays about 30 MB lower, for no measurable cost
# in throughput. An old generation that starts at 32 MB: below that, V8's heap-growing heuristics
# fell into a full collection every ~200 ms of a copy (a 12 MB heap, 1 MB freed each time), a
# third of the daemon's CPU (bench/README.md, "Memory").
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=2", "--initial-old-space-size=32", "/app/bin/pgferry.js"]
CMD ["migrate"]
