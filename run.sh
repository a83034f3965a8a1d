#!/usr/bin/env bash
# cxr14 quickstart: `./run.sh demo` runs the whole workflow on the offline demo data,
# `./run.sh test` runs the tests. Both first set up .venv (Python 3.11+ and pip are all they need).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
EXTRAS=${CXR14_EXTRAS:-cpu,app,slurm,test}

setup() {
    # Reinstall only when pyproject.toml changed since the last install.
    if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
        "$PYTHON" -m venv .venv
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
        touch .venv/.installed
    fi
}

case "${1:-}" in
    setup)
        setup ;;
    demo)
        setup
        shift
        exec .venv/bin/snakemake --configfile config/demo.yaml "$@" ;;
    test)
        setup
        shift
        exec .venv/bin/python -m pytest "$@" ;;
    *)
        echo "usage: ./run.sh demo [snakemake args] | test [pytest args] | setup" >&2
        exit 2 ;;
esac
