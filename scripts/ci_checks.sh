#!/usr/bin/env bash
# Deployment checks for CI beside the test suite (which has tests/test_wheel.py and
# tests/test_compose.py): docker-compose.yml validates (`docker-compose config -q`, both
# profiles). docker-compose is installed with apt-get when it is missing and we are root
# (LONGWEAVE_CI_INSTALL_COMPOSE=0 turns that off); without it the validation is skipped, saying
# so. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ] && [ "${LONGWEAVE_CI_INSTALL_COMPOSE:-1}" = 1 ] \
    && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null 2>&1 \
        || echo "ci_checks: could not install docker-compose; its validation is skipped"
fi
if command -v docker-compose >/dev/null; then
    docker-compose -f docker-compose.yml config -q
    docker-compose -f docker-compose.yml --profile gpu config -q
    echo "ci_checks: docker-compose.yml is valid"
else
    echo "ci_checks: docker-compose not installed; skipping docker-compose config"
fi
