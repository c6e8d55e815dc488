# Two commands do all the set-up on a fresh machine:
#   make demo   train SGMA on the built-in dataset (configs/demo.json)
#   make test   run the test suite under TensorFlow, JAX and PyTorch
PYTHON ?= python3
VENV ?= .venv
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?= -q -n 2
# The slow end-to-end tests (training runs, kill and resume, two devices) run once,
# under this backend; `make test-full` runs everything under every backend.
SLOW_BACKEND ?= tensorflow
BACKEND ?= tensorflow

$(VENV)/.core: requirements.txt requirements-base.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.core requirements-dev.txt requirements-jax.txt requirements-torch.txt
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt
	touch $@

.PHONY: demo test test-full install
install: $(VENV)/.dev

demo: $(VENV)/.core
	KERAS_BACKEND=$(BACKEND) $(VENV)/bin/python train.py --config configs/demo.json

test: $(VENV)/.dev
	@set -e; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend $(VENV)/bin/python -m pytest tests -m "not slow" $(PYTEST_ARGS); \
	done; \
	echo "=== KERAS_BACKEND=$(SLOW_BACKEND), slow tests"; \
	KERAS_BACKEND=$(SLOW_BACKEND) $(VENV)/bin/python -m pytest tests -m slow $(PYTEST_ARGS)

test-full: $(VENV)/.dev
	@set -e; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend $(VENV)/bin/python -m pytest tests $(PYTEST_ARGS); \
	done

# Wheels for the GPU machine (benchmarks/gpu/run.sh): Python 3.12, manylinux x86_64, no deps
# (that machine has no network; benchmarks/gpu/requirements-device.txt says what it lacks).
WHEEL_DIR ?= .whl
DEVICE_PLATFORMS = manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
	manylinux2014_x86_64 manylinux1_x86_64
.PHONY: device-wheels
device-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(addprefix --platform ,$(DEVICE_PLATFORMS)) \
		-d $(WHEEL_DIR) -r benchmarks/gpu/requirements-device.txt
	@ls -l $(WHEEL_DIR)
