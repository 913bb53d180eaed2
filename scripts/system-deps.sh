#!/usr/bin/env bash
# Debian packages the tests need besides Python ones: redis-server (the Redis broker
# test of django-q2), chromium and chromium-driver (the UI tests drive a headless
# Chromium with Selenium), postgresql-client (an older pg_dump than the test server, for
# the backup refusal test). Installs them when missing and we may (root with apt-get);
# otherwise says what to install, and the tests that need them fail saying so too.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# An older PostgreSQL client than the test server's: the backup tests check the refusal.
ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[system-deps] installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
    # The package starts a system-wide server we do not use: the tests start their own.
    systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
else
    echo "[system-deps] please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
fi
