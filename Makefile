# Two commands a new user needs: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Keep DDS discovery on this machine unless the caller says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv interfaces demo realdata lint test bench clean

# mediapipe 0.10.14 breaks with protobuf >= 5 and onnx >= 1.18 needs protobuf >= 6: pin the pair that both accept.
TEST_PINS := 'onnx==1.17.0' 'protobuf>=4.25.3,<5'

# tf2_msgs and hri_msgs are not on PyPI: generate them from interfaces/ with the rosidl wheels (needs a
# C/C++ compiler). Skips what is up to date; a failure only warns, and the tests that need them skip.
BUILD_INTERFACES = $(PY) tools/build_interfaces.py || echo "warning: ROS interfaces under interfaces/ not built (see above)"

$(VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[ros,test,onnx,torch,blazepose]' $(TEST_PINS)
	# mediapipe 0.10.14 bundles BlazePose; its declared deps (jax, opencv-contrib) are not needed for pose and
	# opencv-contrib would shadow opencv-python-headless, so install it alone plus what pose really imports.
	$(PY) -m pip install --no-deps mediapipe==0.10.14
	$(PY) -m pip install absl-py attrs flatbuffers
	$(BUILD_INTERFACES)
	touch $@

venv: $(VENV)/.installed

interfaces: $(VENV)/.installed
	$(BUILD_INTERFACES)

demo: venv
	$(VENV)/bin/hpe-ros demo --out demo_out

# Real recordings for the `realdata` tests (the pose2sim wheel's demos): downloaded once with pip into
# $HPE_ROS_DATA or ~/.cache/hpe_ros/realdata. Without a package registry those tests skip, saying why.
realdata: venv
	@$(PY) -m hpe_ros.realdata || echo "realdata: not available; the real-data tests will be skipped"

# The habits CI enforces: ruff over the whole tree (ruff.toml), mypy over the fully annotated core
# (setup.cfg [mypy] files; grow that list as modules become fully annotated).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: interfaces realdata lint
	$(PY) -m pytest -q test

# Fusion benchmarks (JSON on stdout, markdown table on stderr). aniposelib (with opencv-contrib, jax,
# numba) lives in its own .venv-bench so it never touches .venv; hpe_ros is installed there without deps.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install aniposelib tqdm pyyaml matplotlib
	$(BENCH_VENV)/bin/pip install --no-deps -e .
	touch $@

# The live graph (rclpy, DDS) runs from .venv: CPU per frame per node, latency, drops, MPJPE (JSON on stdout).
bench: $(BENCH_VENV)/.installed venv
	$(BENCH_VENV)/bin/python benchmarks/bench_fusion.py --markdown
	$(BENCH_VENV)/bin/python benchmarks/bench_triangulation.py
	$(PY) benchmarks/bench_fusion_oracle.py --frames 300 --seeds 0 1 2
	$(PY) benchmarks/bench_graph.py --sizes 4x2 8x6 16x6

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo_out build *.egg-info
