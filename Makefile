# The README's two commands: `make demo` and `make test`. Both set up what is missing first
# (a .venv with the stack; the Xvfb packages for tests) and are quick when run again.
VENV   ?= .venv
STAMP  := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

.PHONY: demo test setup system-deps bench clean

demo: $(STAMP) system-deps
	$(VENV)/bin/napari-instseg demo

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

setup: $(STAMP)

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

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis
