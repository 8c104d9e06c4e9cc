# Offline checks of the Azure deployment (infra/, Dockerfile, azure.yaml); see infra/checks/README.md.
# `make test` runs test-infra first. The checks' tools (pycep-parser, checkov, hadolint) live in their
# own virtual environment, .venv-infra, so checkov's pinned dependencies never meet the service's .venv.
PYTHON ?= python3
INFRA_VENV := .venv-infra
INFRA_PY := $(INFRA_VENV)/bin/python
INFRA_STAMP := $(INFRA_VENV)/.installed
INFRA_REQUIREMENTS := infra/checks/requirements.txt infra/checks/constraints.txt

.PHONY: test-infra infra-report clean-infra

$(INFRA_STAMP): $(INFRA_REQUIREMENTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed for the infra checks (found " + sys.version.split()[0] + ")")'
	test -x $(INFRA_PY) || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_PY) -m pip install --quiet --disable-pip-version-check -r infra/checks/requirements.txt
	touch $@

# the five checks (parse, types, policy, checkov, hadolint) on the real files, and the tests that
# plant a defect in a copy of them and expect each check to fail
test-infra: $(INFRA_STAMP)
	$(INFRA_PY) -m pytest -c infra/checks/pytest.ini -q infra/checks

# the same five checks as a readable report (no planted defects)
infra-report: $(INFRA_STAMP)
	$(INFRA_PY) infra/checks/run.py

clean-infra:
	rm -rf $(INFRA_VENV)
