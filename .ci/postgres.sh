#!/usr/bin/env bash
# Makes sure PostgreSQL runs on loopback with a `sesame` role and a `sesame_test` database, then
# prints the URL to use as SESAME_TEST_POSTGRES_URL. Installs PostgreSQL from Debian when absent.
# Idempotent; safe on a machine where PostgreSQL already runs with trust authentication.
set -euo pipefail

log() { printf '[postgres] %s\n' "$*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log "PostgreSQL is not installed: installing it from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ -z "$version" ]; then
  log "no PostgreSQL cluster found; creating one"
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$version" main >&2
fi

if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  log "starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || pg_ctlcluster "$version" main start >&2
fi

for _ in $(seq 1 60); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.5
done
pg_isready -h 127.0.0.1 -p 5432 >&2

as_postgres() { su postgres -s /bin/sh -c "psql -v ON_ERROR_STOP=1 -qAtX $*"; }

if [ "$(as_postgres "-c \"SELECT 1 FROM pg_roles WHERE rolname = 'sesame'\"")" != "1" ]; then
  log "creating role sesame"
  as_postgres "-c \"CREATE ROLE sesame LOGIN PASSWORD 'sesame'\"" >&2
fi
if [ "$(as_postgres "-c \"SELECT 1 FROM pg_database WHERE datname = 'sesame_test'\"")" != "1" ]; then
  log "creating database sesame_test"
  as_postgres "-c \"CREATE DATABASE sesame_test OWNER sesame\"" >&2
fi

echo "postgres://sesame:sesame@127.0.0.1:5432/sesame_test"
