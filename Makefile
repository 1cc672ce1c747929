# Set-up, demo and checks for Ponder. `make demo` and `make test` are the README's two commands.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# llama.cpp's native build enables every instruction set the build machine reports. Some virtual
# machines report AMX but do not enable it, and llama.cpp then crashes at the first matrix
# multiply, so the build targets the widely available AVX2 set instead.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
QUESTION ?= What is the capital of France?

.PHONY: setup demo test lint typecheck unit

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/ponder ask "$(QUESTION)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy bots core tasks migrations

unit: setup
	$(BIN)/pytest -q

test: lint typecheck unit
