#!/bin/sh
# Runs once, when the primary's data volume is first initialised (/docker-entrypoint-initdb.d):
# lets the `replica` service stream from it. The image's own pg_hba.conf line `host all all all`
# does not cover replication connections, which need a line of their own.
set -eu
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
