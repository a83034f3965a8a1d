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

system_deps() {
    # The browser tests use Debian's chromium; the cluster test starts a one-node Slurm. Install them
    # where we can (root with apt-get, as in CI); elsewhere those tests skip and say why.
    local missing=""
    command -v chromium >/dev/null || missing="$missing chromium"
    command -v slurmctld >/dev/null || missing="$missing slurm-wlm"
    command -v munged >/dev/null || missing="$missing munge"
    if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing$missing for the browser and Slurm tests" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
            || echo "warning: could not install$missing; those tests will skip" >&2
    fi
}

case "${1:-}" in
    setup)
        setup ;;
    demo)
        setup
        shift
        # Targets and options first: --configfile takes every word after it.
        exec .venv/bin/snakemake "$@" --configfile config/demo.yaml ;;
    test)
        setup
        system_deps
        shift
        exec .venv/bin/python -m pytest "$@" ;;
    *)
        echo "usage: ./run.sh demo [snakemake args] | test [pytest args] | setup" >&2
        exit 2 ;;
esac
