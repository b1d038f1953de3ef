# The README's two commands: `make demo` and `make test`. Both set up what is missing first
# (a .venv with the stack; the Xvfb packages for tests) and are quick when run again.
VENV   ?= .venv
STAMP  := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

.PHONY: demo test setup system-deps bench clean lint docs

demo: $(STAMP) system-deps
	$(VENV)/bin/napari-instseg demo

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

setup: $(STAMP)

# ruff (lint + format check) and mypy (strict on napari_instseg.core), as pre-commit runs them
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# API reference from the numpydoc docstrings (pdoc) into docs/api/ (not committed)
CORE_MODULES = $$($(VENV)/bin/python -c "import pkgutil, napari_instseg.core as c; print(' '.join(['napari_instseg.core'] + [m.name for m in pkgutil.walk_packages(c.__path__, 'napari_instseg.core.') if '._' not in m.name]))")
docs: $(STAMP)
	$(VENV)/bin/python -m pip install -q "pdoc>=14"
	$(VENV)/bin/python -m pdoc -d numpy -o docs/api $(CORE_MODULES)
	@echo "API reference: docs/api/index.html"

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) scripts/setup.sh
	touch $@

system-deps:
	scripts/system-deps.sh

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_coco_export.py
	$(VENV)/bin/python benchmarks/bench_prompting.py
	$(VENV)/bin/python benchmarks/bench_qa.py
	$(VENV)/bin/python benchmarks/bench_slide.py
	$(VENV)/bin/python benchmarks/bench_store_scale.py
	xvfb-run -a $(VENV)/bin/python benchmarks/bench_project.py
	$(VENV)/bin/python benchmarks/bench_auto.py
	$(VENV)/bin/python benchmarks/bench_video.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis docs/api
