# vtrial — newcomer commands: `make demo`, `make test`; contributors: `make lint`, `make docs`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint format docs wheel bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

# CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA wheel.
# torch==2.13.0 resolves to the CPU wheel that ships with this machine image; elsewhere use
# `pip install torch --index-url https://download.pytorch.org/whl/cpu`.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf runs/quickstart
	$(VENV)/bin/vtrial run quickstart --out runs/quickstart

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

wheel: $(STAMP)
	$(PY) -m build --wheel --outdir dist .

bench: $(STAMP)
	$(PY) benchmarks/bench_ecgsyn.py
	$(PY) benchmarks/bench_measure.py
	$(PY) benchmarks/calibration_ecgrdvq.py
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) runs .pytest_cache site dist build
