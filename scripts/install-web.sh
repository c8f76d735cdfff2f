#!/usr/bin/env bash
# The web client's tools and build, each only when missing or out of date, so it costs nothing
# once done:
#   - Debian's Chromium (/usr/bin/chromium) for the end-to-end tests (skipped with --no-browser);
#   - web/node_modules from the npm registry (`npm ci`) when missing or older than
#     web/package-lock.json;
#   - web/dist (`npm run build`: type check, then Vite) when missing or older than its sources.
# Needs Node.js 20.19 or newer and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

browser=1
for arg in "$@"; do
    case "$arg" in
        --no-browser) browser=0 ;;
        *) echo "install-web: unknown argument $arg (usage: scripts/install-web.sh [--no-browser])" >&2; exit 2 ;;
    esac
done

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ "$browser" -eq 1 ] && [ ! -x /usr/bin/chromium ]; then
    echo "install-web: /usr/bin/chromium missing; installing Debian's chromium" >&2
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-web: Node.js 20.19+ and npm are needed to build the web client (https://nodejs.org)" >&2
    exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
    echo "install-web: Node.js $(node --version) is too old; the web client's build (Vite 8) needs 20.19 or newer" >&2
    exit 1
fi

# npm writes node_modules/.package-lock.json on every install: its age is the install's.
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    echo "install-web: npm ci (web/node_modules missing or older than web/package-lock.json)" >&2
    npm --prefix web ci --no-audit --no-fund
fi

stale=""
if [ ! -f web/dist/index.html ]; then
    stale="web/dist missing"
else
    changed=$(find web/src web/public web/index.html web/vite.config.ts web/tsconfig.json web/package.json web/package-lock.json \
        -newer web/dist/index.html -print -quit 2>/dev/null || true)
    [ -n "$changed" ] && stale="$changed is newer than web/dist"
fi
if [ -n "$stale" ]; then
    echo "install-web: building web/dist ($stale)" >&2
    npm --prefix web run --silent build
fi
