# Sourced by the project's scripts: `ptrackd_need CMD:PACKAGE …` installs the Debian package of every
# command that is missing (CMD is a name on PATH or an absolute path), as root or through sudo; without
# either it stops at once, naming the packages and the command that installs them.
ptrackd_need() {
  local pair cmd missing=()
  for pair in "$@"; do
    cmd="${pair%%:*}"
    if [ "${cmd#/}" != "$cmd" ]; then [ -x "$cmd" ] && continue; else command -v "$cmd" >/dev/null && continue; fi
    missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local as=()
  if [ "$(id -u)" != 0 ]; then
    # sudo that may ask for a password only where someone can answer it
    if command -v sudo >/dev/null && { [ -t 0 ] || sudo -n true 2>/dev/null; }; then
      as=(sudo)
    else
      echo "setup: missing Debian packages: ${missing[*]}. Install them, then run this again:" >&2
      echo "  sudo apt-get install ${missing[*]}" >&2
      return 1
    fi
  fi
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  local install=("${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}")
  # an old or empty package list first gets one update
  "${install[@]}" >/dev/null 2>&1 || { "${as[@]}" apt-get update -qq && "${install[@]}" >/dev/null; } || {
    echo "setup: could not install ${missing[*]} (apt-get failed)" >&2
    return 1
  }
}
