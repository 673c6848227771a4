#!/usr/bin/env bash
# The team's MLflow tracking server. `make server` and the `mlflow` service of
# docker/compose.yaml both run this script, and the tests start the server with it.
#
#   MLFLOW_BACKEND_STORE_URI      runs and registry; default sqlite:///mlflow-server.db,
#                                 e.g. postgresql+psycopg2://user:pass@host:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  where the server keeps artifacts (default ./mlartifacts);
#                                 clients reach them through the server (mlflow-artifacts:/)
#   MLFLOW_SERVER_HOST / _PORT    bind address (default 127.0.0.1:5000)
#   MLFLOW_SERVER_WORKERS         uvicorn workers (default 2)
#   MLFLOW_ALLOWED_HOSTS          Host headers the server accepts, instead of its default
#                                 (localhost and private IPs), e.g.
#                                 mlflow:*,localhost:*,127.0.0.1:*,mlflow.example.org:*
#   MLFLOW_AUTH                   empty (no auth) or basic-auth
#   MLFLOW_AUTH_ADMIN_USERNAME    admin user created on first start (default admin)
#   MLFLOW_AUTH_ADMIN_PASSWORD    its password (12+ characters), needed on first start
#   MLFLOW_AUTH_DB_URL            the user store (default sqlite:///basic_auth.db)
#   MLFLOW_AUTH_DEFAULT_PERMISSION  READ (default), EDIT, MANAGE or NO_PERMISSIONS
#   MLFLOW_AUTH_CACHE_TTL_SECONDS  seconds a checked password is cached per worker (default
#                                 60; 0 re-checks every request, about 0.5 s of CPU each)
#   MLFLOW_AUTH_CONFIG_PATH       an auth .ini of your own instead of the generated one
#   MLFLOW_FLASK_SERVER_SECRET_KEY  CSRF key of the auth app (default: random per start)
set -euo pipefail

die() {
    echo "serve.sh: $*" >&2
    exit 2
}

# the auth .ini this script generates (MLFLOW_AUTH=basic-auth without MLFLOW_AUTH_CONFIG_PATH):
# the server's workers read it while they run, so it lives as long as the server and is
# removed when this script ends (the server's exit, SIGTERM, SIGINT, SIGHUP; not SIGKILL)
generated_config=""
remove_generated_config() {
    if [[ -n "$generated_config" ]]; then
        rm -f -- "$generated_config"
    fi
}
trap remove_generated_config EXIT
# until the server runs, a signal ends the script through that EXIT trap (an untrapped one
# would kill bash without running it)
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///mlflow-server.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-mlartifacts}"
args=(
    server
    --backend-store-uri "$backend"
    --serve-artifacts --artifacts-destination "$artifacts"
    --host "${MLFLOW_SERVER_HOST:-127.0.0.1}"
    --port "${MLFLOW_SERVER_PORT:-5000}"
    --workers "${MLFLOW_SERVER_WORKERS:-2}"
)
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
    args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
fi

case "${MLFLOW_AUTH:-}" in
    "" | none | off) ;;
    basic-auth)
        # MLflow reads these two itself and takes an empty one as set: drop empty ones
        [[ -n "${MLFLOW_AUTH_ADMIN_USERNAME:-}" ]] || unset MLFLOW_AUTH_ADMIN_USERNAME
        [[ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]] || unset MLFLOW_AUTH_ADMIN_PASSWORD
        if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
            # The password stays in the environment (MLflow reads MLFLOW_AUTH_ADMIN_PASSWORD);
            # the generated file holds no secret.
            generated_config="$(mktemp "${TMPDIR:-/tmp}/mlflow-auth.XXXXXX")"
            cat >"$generated_config" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DB_URL:-sqlite:///basic_auth.db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
INI
            export MLFLOW_AUTH_CONFIG_PATH="$generated_config"
        fi
        if [[ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]]; then
            # CSRF protection of the auth app needs one key shared by all workers
            MLFLOW_FLASK_SERVER_SECRET_KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
            export MLFLOW_FLASK_SERVER_SECRET_KEY
            echo "serve.sh: a random MLFLOW_FLASK_SERVER_SECRET_KEY for this start (set one to keep UI sessions across restarts)" >&2
        fi
        args+=(--app-name basic-auth)
        ;;
    *) die "MLFLOW_AUTH must be empty or basic-auth, not '${MLFLOW_AUTH}'" ;;
esac

if [[ "$artifacts" != *://* ]]; then
    mkdir -p "$artifacts"
fi
echo "serve.sh: mlflow ${args[*]}" >&2
if [[ -z "$generated_config" ]]; then
    exec "${MLFLOW_BIN:-mlflow}" "${args[@]}"
fi
# a generated .ini to remove afterwards: run the server as a child (exec would drop the EXIT
# trap), pass it the signals that end this script, and exit with its status
"${MLFLOW_BIN:-mlflow}" "${args[@]}" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' TERM INT HUP
status=0
wait "$server" || status=$?
while kill -0 "$server" 2>/dev/null; do
    # a trapped signal interrupted the wait: wait again for the server's own exit status
    status=0
    wait "$server" || status=$?
done
exit "$status"
