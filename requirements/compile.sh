#!/usr/bin/env bash
# Regenerate the locks (exact versions and sha256 hashes of every package, for every platform and
# Python ≥ 3.11) from pyproject.toml. uv keeps the versions already in a lock unless told to upgrade
# (add --upgrade, or --upgrade-package NAME); then run the tests and record the change in CHANGELOG.md.
#   pip install uv==0.13.9 && bash requirements/compile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--universal --python-version 3.11 --excludes requirements/excludes.txt --generate-hashes)
uv pip compile pyproject.toml "${common[@]}" -o requirements/runtime.lock "$@"
uv pip compile pyproject.toml --extra test --extra lint "${common[@]}" -o requirements/test.lock "$@"
