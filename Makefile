# Two commands a new user needs: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Keep DDS discovery on this machine unless the caller says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv demo test bench clean

$(VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[ros,test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/hpe-ros demo --out demo_out

test: venv
	$(PY) -m pytest -q test

clean:
	rm -rf $(VENV) demo_out build *.egg-info
