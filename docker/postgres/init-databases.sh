#!/usr/bin/env bash
# First start of the postgres container only (empty data volume): one database per service, each
# owned by its own login role, closed to everyone else. Passwords come from the environment and
# reach SQL as psql variables (:'name' quotes them), never spliced into the SQL text.
set -euo pipefail

: "${KEYCLOAK_DB_PASSWORD:?KEYCLOAK_DB_PASSWORD is required}"
: "${ORTHANC_DB_PASSWORD:?ORTHANC_DB_PASSWORD is required}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v keycloak_password="$KEYCLOAK_DB_PASSWORD" \
  -v orthanc_password="$ORTHANC_DB_PASSWORD" <<'SQL'
CREATE ROLE keycloak LOGIN PASSWORD :'keycloak_password';
CREATE DATABASE keycloak OWNER keycloak;
REVOKE ALL ON DATABASE keycloak FROM PUBLIC;

CREATE ROLE orthanc LOGIN PASSWORD :'orthanc_password';
CREATE DATABASE orthanc OWNER orthanc;
REVOKE ALL ON DATABASE orthanc FROM PUBLIC;
SQL

# PostgreSQL 15+ no longer lets PUBLIC create in the public schema: hand each schema to its owner.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname keycloak -c 'ALTER SCHEMA public OWNER TO keycloak;'
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname orthanc -c 'ALTER SCHEMA public OWNER TO orthanc;'
