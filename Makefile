# Two commands on a fresh machine:  make demo  |  make test
# Both create .venv and install portkit with every pinned dependency first (idempotent).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt
# onnx2tf 1.29.24's metadata pins an older stack (TF 2.19, numpy 1.26, onnx 1.19...); it runs on
# the pinned one, so it is installed without its declared dependencies (they are in .[all]).
ONNX2TF := onnx2tf==1.29.24
# executorch 1.5.1's metadata pulls coremltools, hydra, pandas and test libraries; what its
# exporter and runtime import is in the executorch extra. Same treatment.
EXECUTORCH := executorch==1.5.1

.PHONY: install demo test docs clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[all,dev,viz,docs]'
	$(PIP) --no-deps $(ONNX2TF) $(EXECUTORCH)
	touch $@

demo: install
	$(VENV)/bin/portkit demo

# Two test processes: most of a test is one framework's single-threaded import and export.
test: install
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15

# The documentation site, into site/ (git-ignored). --strict: a broken link or anchor, a
# docstring warning, or a benchmark block no results file renders fails it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) portkit-demo site
