#!/usr/bin/env sh
# Browser tests drive Debian's Chromium: Playwright's own download cannot reach its CDN from here.
# Installs it with apt-get when it is missing and we are root; otherwise says how, and fails under CI.
set -eu

for candidate in "${CONVO_CHROMIUM:-}" chromium chromium-browser; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
    exit 0
  fi
done

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  exit 0
fi

echo "Chromium is missing: install it (sudo apt-get install chromium) to run the browser tests." >&2
case "${CI:-}" in
  1|true|TRUE|yes) exit 1 ;;
  *) exit 0 ;;
esac
