#!/usr/bin/env bash
# Installs what the tests and the demo need, skipping whatever is already there:
# Debian packages (Orthanc + DICOMweb, Redis, Chromium, wrk, dcmtk, docker-compose to validate docker/), npm dependencies, the pinned OHIF build.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(orthanc orthanc-dicomweb redis-server chromium wrk dcmtk docker-compose)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these as services on install; the tests run their own instances on free ports.
for svc in orthanc redis-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
done

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
node scripts/fetch-ohif.mjs
# Rebuild only when a source, the TypeScript settings or the dependencies changed since the last build.
if [ ! -f dist/proxy/main.js ] || [ -n "$(find proxy tsconfig.json package-lock.json -newer dist/proxy/main.js -print -quit)" ]; then
  npm run --silent build
  touch dist/proxy/main.js
fi
