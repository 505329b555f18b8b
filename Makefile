# snakemake-fedgen: everything a newcomer needs is behind `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# podman + runc (runtime: podman; docs/site-admin.md) and debootstrap (builds the test image);
# bio-eagle-examples: real 1000 Genomes genotypes (tests/workflow/test_real_genotypes.py).
APT_PACKAGES := plink2 plink1.9 bcftools tabix beagle minimac4 gwama bubblewrap default-jre-headless \
	podman runc debootstrap bio-eagle-examples slurm-wlm munge
# Command each apt package provides; a package is installed only when its command is missing.
APT_COMMANDS := plink2 plink1.9 bcftools tabix beagle minimac4 GWAMA bwrap java \
	podman runc debootstrap /usr/share/doc/bio-eagle/examples/EUR_test.vcf.gz slurmctld munged

.PHONY: install demo test test-fast lint format bench mutate clean help

help:
	@echo "make demo   - set up, simulate three sites, run the federated GWAS, show results"
	@echo "make test   - set up and run the full test suite"
	@echo "make lint   - ruff, ruff format --check, snakefmt --check, snakemake --lint, mypy, lint-imports"
	@echo "make bench  - run the benchmarks (minutes to an hour)"
	@echo "make mutate - apply known-bad patches to a copy and check the tests catch each"

install: $(STAMP)

PLUGIN := snakemake-executor-plugin-fedgen

$(STAMP): pyproject.toml $(PLUGIN)/pyproject.toml
	@bash .ci/apt-install.sh $(APT_PACKAGES) -- $(APT_COMMANDS)
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e ./$(PLUGIN) -e '.[test]'
	@$(VENV)/bin/snakemake --help | grep -q -- '--fedgen-sites' \
		|| { echo "make install: snakemake does not see the fedgen executor plugin" >&2; exit 1; }
	@touch $(STAMP)
	@echo "make install: done (.venv ready, executor plugin 'fedgen' visible to snakemake)"

demo: install
	@$(VENV)/bin/fedgen demo

test: install
	@$(VENV)/bin/pytest

mutate: install
	@$(PY) benchmarks/mutation_check.py

test-fast: install
	@$(VENV)/bin/pytest -m "not slow"

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/snakefmt --check workflows/federated-gwas/workflow
	@cd workflows/federated-gwas && ../../$(VENV)/bin/snakemake --lint --directory .test
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache demo-run
