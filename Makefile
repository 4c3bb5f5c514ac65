# Workbench: `make run` sets everything up and starts the app; `make test` sets up and runs the tests.
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501
HOST ?= 127.0.0.1

.PHONY: setup setup-dev prepare run test lint format bench clean

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh --dev

prepare: setup
	$(BIN)/workbench models prepare default

run: prepare
	$(BIN)/streamlit run app.py --server.address $(HOST) --server.port $(PORT)

test: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: setup-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: prepare
	$(BIN)/python bench/model_load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
