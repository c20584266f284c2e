#!/usr/bin/env bash
# Checks docker/ without a Docker engine: the compose file resolves with the example settings
# (plus stand-in secrets) and refuses to resolve without them; the Dockerfile has the lines the
# image depends on; the Keycloak realm is valid JSON. Run from anywhere: bash docker/validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILE=docker/docker-compose.yml
ENV_FILE=docker/.env.example
SECRETS=(ORTHANC_PASSWORD POSTGRES_PASSWORD KEYCLOAK_DB_PASSWORD ORTHANC_DB_PASSWORD KEYCLOAK_ADMIN_PASSWORD OIDC_CLIENT_SECRET SESSION_SECRET SCRIPTS_CLIENT_SECRET)
failures=0
fail() { echo "validate: FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "validate: ok: $*"; }

if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif docker-compose version >/dev/null 2>&1; then compose=(docker-compose)
else echo "validate: neither 'docker compose' nor 'docker-compose' is installed (apt-get install docker-compose)" >&2; exit 2
fi
run_compose() { "${compose[@]}" -f "$COMPOSE_FILE" --env-file "$ENV_FILE" "$@"; }

# 1. The example file leaves every secret empty: resolving must be refused, naming the variable.
unset_args=(); for s in "${SECRETS[@]}"; do unset_args+=(-u "$s"); done
if out=$(env "${unset_args[@]}" "${compose[@]}" -f "$COMPOSE_FILE" --env-file "$ENV_FILE" config -q 2>&1); then
  fail "compose config resolved with empty secrets"
elif grep -qE 'set [A-Z_]+ in docker/\.env' <<<"$out"; then ok "compose refuses to resolve without secrets"
else fail "compose failed without secrets, but not with a \${VAR:?} message: $out"
fi
for s in "${SECRETS[@]}"; do
  grep -q "^$s=\$" "$ENV_FILE" || fail "$ENV_FILE must list $s with an empty value"
  grep -qE "\\\$\\{$s:\\?" "$COMPOSE_FILE" || fail "$COMPOSE_FILE must read $s as \${$s:?message}"
done

# 2. With stand-in secrets (never real ones) the file resolves.
export ORTHANC_PASSWORD=validate-orthanc POSTGRES_PASSWORD=validate-postgres \
  KEYCLOAK_DB_PASSWORD=validate-keycloak-db ORTHANC_DB_PASSWORD=validate-orthanc-db KEYCLOAK_ADMIN_PASSWORD=validate-kc-admin \
  OIDC_CLIENT_SECRET=validate-oidc-client SESSION_SECRET=validate-session-secret-of-at-least-32-bytes \
  SCRIPTS_CLIENT_SECRET=validate-scripts-client
if out=$(run_compose config -q 2>&1); then ok "compose config -q (${compose[*]})"; else fail "compose config: $out"; fi

# 3. The Dockerfile lines the image relies on (no hadolint here: plain greps).
dockerfile=docker/Dockerfile
need() { grep -qE "$1" "$dockerfile" && ok "Dockerfile: $2" || fail "Dockerfile lacks $2 (/$1/)"; }
need '^ARG NODE_IMAGE=node:24-bookworm-slim$' 'Node 24 LTS base image'
need '^FROM \$\{NODE_IMAGE\} AS build$' 'a build stage'
need '^RUN npm ci ' 'npm ci'
need 'node scripts/fetch-ohif\.mjs' 'the OHIF fetch'
need 'npm run build' 'the TypeScript build'
need 'npm prune --omit=dev' 'pruned dev dependencies'
need '^COPY --from=build /app/\.cache/ohif/ \.cache/ohif/$' 'the OHIF build where the gateway looks'
need '^USER node$' 'a non-root user'
need '^EXPOSE 8080$' 'EXPOSE 8080'
need '^HEALTHCHECK ' 'a HEALTHCHECK'
need '^ENTRYPOINT \["node", "--max-semi-space-size=64", "dist/proxy/main\.js"\]$' 'the gateway entrypoint (with the Node flag npm start uses)'
need '^CMD \["--config", "routes\.yaml"\]$' 'the default routes file'
[ "$(grep -E '^USER ' "$dockerfile" | tail -1)" = "USER node" ] || fail "Dockerfile: the last USER must be node"
for f in node_modules dist .cache .git .env; do
  grep -qxF "$f" .dockerignore || fail ".dockerignore lacks $f"
done

# 4. The realm import is JSON (Keycloak's ${PUBLIC_URL:…} placeholders live inside strings).
if node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' docker/keycloak/realm-pacs.json; then
  ok "realm-pacs.json parses"
else fail "docker/keycloak/realm-pacs.json is not valid JSON"; fi
# Confidential clients take their secret from the environment (${VAR}), never a literal in the file.
if node -e '
  const realm = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const bad = realm.clients.filter((c) => !c.publicClient && !/^\$\{[A-Z_]+\}$/.test(c.secret ?? ""));
  if (bad.length) { console.error(bad.map((c) => c.clientId).join(", ")); process.exit(1); }' docker/keycloak/realm-pacs.json; then
  ok "realm-pacs.json: confidential clients read their secret from the environment"
else fail "realm-pacs.json: a confidential client has a literal (or no) secret instead of \${VAR}"; fi
bash -n docker/postgres/init-databases.sh || fail "init-databases.sh has a syntax error"

if [ "$failures" -gt 0 ]; then echo "validate: $failures problem(s)" >&2; exit 1; fi
echo "validate: docker/ OK"
