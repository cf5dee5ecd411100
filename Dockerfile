# pgferry runs beside the source as a container. Build: docker build -t pgferry .
# Configure with PGFERRY_SOURCE_URL, PGFERRY_TARGET_URL, PGFERRY_STATE (put it on a volume).
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# pg_dump must be at least the source's major version: client tools 17 from the PostgreSQL
# project's Debian repository read every server up to 17.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] http://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update && apt-get install -y --no-install-recommends postgresql-client-17 \
 && apt-get purge -y curl gnupg && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/package.json ./
# Configured by environment: PGFERRY_SOURCE_URL, PGFERRY_TARGET_URL, PGFERRY_API_TOKEN (required
# for a non-loopback bind), PGFERRY_JOBS, PGFERRY_MAX_SNAPSHOT_AGE, PGFERRY_LOG_LEVEL.
ENV PGFERRY_STATE=/state/pgferry-state.sqlite PGFERRY_PG_BIN=/usr/lib/postgresql/17/bin PGFERRY_HTTP=0.0.0.0:8080
RUN mkdir /state && chown node:node /state
VOLUME /state
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
  CMD node -e "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "/app/bin/pgferry.js"]
CMD ["migrate"]
