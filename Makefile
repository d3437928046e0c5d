# Two commands do everything from a fresh clone: `make train` and `make test`.
# torch is pinned in the install step: an open range would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
ENV_PINS := "ale-py==0.12.*" "procgen2==0.10.7" "popgym==1.0.7" "minigrid==3.2.*"
# continuous control (mujoco: env ids, docs/MUJOCO.md): the MuJoCo simulator, from the package index
MUJOCO_PINS := "mujoco==4.0.*"
# the memory suite's statistics (rliable); pandas < 3 for rliable's arch, numpy < 2 for procgen2
SUITE_PINS := "rliable==1.2.0" "pandas<3" "numpy<2"

.PHONY: install test train bench clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q $(TORCH_PIN) $(ENV_PINS) $(MUJOCO_PINS) $(SUITE_PINS) pytest "pytest-xdist==3.*" -e ".[ray,wandb,mujoco]"
	$(PY) -m rtrl.cells.native   # builds the C pass over S (needs cc; without one PyTorch's pass is used)
	touch $@

install: $(VENV)/.installed

# RTRL_REQUIRE_OPTIONAL=1: a test whose optional package (ale-py, procgen2, popgym, minigrid, ray, rliable, wandb)
# is missing fails here instead of being skipped, so make test (and CI) runs every test.
# -n 2: two pytest workers (pytest-xdist). Many tests start processes and wait on them; two workers overlap
# those waits (measured alone on this 2-core machine: 328 s in one worker, 274 s in two).
test: install
	RTRL_REQUIRE_OPTIONAL=1 $(PY) -m pytest -n 2 tests

# R2AC with the RTRL eLSTM on delayed recall (delay 30 > unroll 10); a second run resumes/reports.
train: install
	$(VENV)/bin/rtrl train --preset memory --out runs/main
	$(VENV)/bin/rtrl eval runs/main --episodes 500

bench: install
	$(VENV)/bin/rtrl bench cells

clean:
	rm -rf $(VENV) runs
