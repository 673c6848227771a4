#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is created: the Optuna study and the MLflow user store
# get databases of their own beside MLflow's ($POSTGRES_DB). MLflow and Optuna both keep an
# `alembic_version` table, so they cannot share one database.
set -euo pipefail
for db in "$OPTUNA_DB" "$MLFLOW_AUTH_DB"; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -c "CREATE DATABASE \"$db\""
done
