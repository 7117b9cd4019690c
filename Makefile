# Two commands a new user needs: `make run` (the main job) and `make test`.
SHELL := /bin/bash
SUITE ?= fashion-mnist-lenet
PROFILE ?= quick
TARGETS ?= --target onnxruntime-cpu --target openvino-cpu
PYTEST_ARGS ?=

.PHONY: run test example env lock clean

env:
	@scripts/setup.sh >/dev/null

run:
	@venv=$$(scripts/setup.sh) && "$$venv/bin/harness" run --suite $(SUITE) $(TARGETS) --profile $(PROFILE)

# Your network, your data: the image-folder example (torchvision models by reference) on a folder
# of Fashion-MNIST PNGs written first; see README "Benchmark your own model".
example:
	@venv=$$(scripts/setup.sh) && "$$venv/bin/python" -m harness.benchmarks.make_imagefolder data/fashion-folder --per-class 200 \
	  && "$$venv/bin/harness" run --suite imagefolder-example --data-dir data/fashion-folder --profile quick

test:
	@venv=$$(scripts/setup.sh) && "$$venv/bin/python" -m pytest $(PYTEST_ARGS)

# Regenerate requirements.lock from a working env (after changing versions on purpose).
lock:
	@venv=$$(scripts/setup.sh) && { echo "# Exact stack this project is tested with (Debian, Python 3.11, CPU). Regenerate: make lock"; \
	  "$$venv/bin/python" -m pip freeze --all --exclude-editable | grep -viE '^(pip|compressmark)=='; } > requirements.lock

# reports/ is also the harness.reports source (*.py, templates/): only the pages runs wrote go
clean:
	rm -rf .harness build dist *.egg-info
	find reports -mindepth 1 -maxdepth 1 -type d ! -name templates -exec rm -rf {} +
	rm -f reports/compare-*.html
