# Two commands do all the set-up: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_EPOCHS ?= 10
DEMO_TRACES ?= 2000
# datasets go to seisbench's own cache (~/.seisbench, or $SEISBENCH_CACHE_ROOT when set): the
# same one the README's commands use after `source .venv/bin/activate`

# `make server`: the team's MLflow server (docker/serve.sh; docker/compose.yaml runs the same)
DB_URL ?=
ARTIFACTS_DIR ?= mlartifacts
HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 2
AUTH ?=

.PHONY: install demo test ui-check lint clean server bench

$(BIN)/seismic-ml: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel of torch first, so nothing below pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/seismic-ml

demo: install
	$(BIN)/seismic-ml data inspect --dataset synthetic:$(DEMO_TRACES)
	@set -e; mkdir -p outputs; \
	$(BIN)/seismic-ml train-mag --model-type amag_v2 --dataset synthetic:$(DEMO_TRACES) \
		--epochs $(DEMO_EPOCHS) --warmup-epochs 1 --run-name demo-amag_v2 | tee outputs/demo_train.txt; \
	run_id=$$(sed -n 's/^run id: //p' outputs/demo_train.txt); \
	$(BIN)/seismic-ml plot-history --run-id $$run_id; \
	$(BIN)/seismic-ml eval-mag --run-id $$run_id --plot; \
	echo; echo "demo run id: $$run_id"; \
	echo "Runs are in MLflow's default local store (sqlite:///mlflow.db). Open the UI with:"; \
	echo "  source $(VENV)/bin/activate   # once per shell: every README command assumes it"; \
	echo "  mlflow ui --backend-store-uri sqlite:///mlflow.db   # then http://127.0.0.1:5000"; \
	echo "  (choose 'Model training' in the UI's header to see the runs)"

test: install
	$(BIN)/python -m pytest -q -ra --durations=25

# the benchmark suite (issue #13): benchmarks/results/bench.json and bench.md; BENCH_ARGS
# passes options on, e.g. BENCH_ARGS="--quick", "--only training,data", "--suite-seconds 300"
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# `mlflow ui` over two fresh training runs, checked in headless Chromium (apt-get install chromium)
ui-check: install
	$(BIN)/python -m pytest -q -ra tests/integration/test_ui.py

# DB_URL empty: a local SQLite file (mlflow-server.db); AUTH=basic-auth needs
# MLFLOW_AUTH_ADMIN_PASSWORD in the environment on the first start
server: install
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_BACKEND_STORE_URI="$(or $(DB_URL),sqlite:///mlflow-server.db)" \
		MLFLOW_ARTIFACTS_DESTINATION="$(ARTIFACTS_DIR)" MLFLOW_SERVER_HOST="$(HOST)" \
		MLFLOW_SERVER_PORT="$(PORT)" MLFLOW_SERVER_WORKERS="$(WORKERS)" MLFLOW_AUTH="$(AUTH)" \
		docker/serve.sh

lint: install
	$(BIN)/ruff check seismic_ml tests benchmarks
	$(BIN)/ruff format --check seismic_ml tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache
