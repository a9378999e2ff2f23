#!/usr/bin/env bash
# Installs the Debian packages the tests drive, when they are missing:
# Chromium (Playwright drives it; it cannot download browsers here) and Node.js
# for the certified RP library, PostgreSQL for the database tests, Redis for the
# shared rate limits, Caddy and docker-compose to check the deployment's proxy
# configuration and compose.yaml, Debian's Python venv to carry out the image's build. Needs root for apt-get; otherwise says what to install.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
/usr/bin/python3.11 -c "import ensurepip" >/dev/null 2>&1 || missing+=(python3.11-venv)  # the image's build steps
bare=()  # without their recommended packages: docker-compose's would be a Docker engine
command -v docker-compose >/dev/null 2>&1 || bare+=(docker-compose)
[ ${#missing[@]} -eq 0 ] && [ ${#bare[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "The end-to-end tests need the Debian packages: ${missing[*]} ${bare[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${missing[*]} ${bare[*]}" >&2
  exit 0
fi
echo "Installing ${missing[*]} ${bare[*]} for the end-to-end tests…"
apt-get update -qq
[ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
[ ${#bare[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bare[@]}" >/dev/null
