#!/usr/bin/env sh
# Debian packages the tests drive: Chromium for the browser tests (Playwright's own download cannot
# reach its CDN from here) and nginx for deploy/nginx.conf. Installs what is missing when we are root;
# otherwise says how, and fails under CI.
set -eu

missing=""
found=""
for candidate in "${CONVO_CHROMIUM:-}" chromium chromium-browser; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then found=1; fi
done
[ -n "$found" ] || missing="chromium fonts-dejavu-core"
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing="$missing nginx"

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's$missing for the tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086  # the list is meant to split
  # RUNLEVEL=1: invoke-rc.d starts no service (the tests run their own nginx, not the default site).
  RUNLEVEL=1 apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit 0
fi

echo "Missing for the tests:$missing (sudo apt-get install$missing)." >&2
case "${CI:-}" in
  1|true|TRUE|yes) exit 1 ;;
  *) exit 0 ;;
esac
