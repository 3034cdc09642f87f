# Sourced by scripts/setup.sh and scripts/arm64-test.sh.
# install_missing LABEL PACKAGE...: installs the Debian packages among PACKAGE that are not
# installed yet (apt-get, through sudo when not root); silent when all are present. Other jobs may
# hold the dpkg lock for a while: apt-get waits for it (up to 10 minutes) rather than fail.
install_missing() {
  local label=$1 p
  shift
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "$label: installing ${missing[*]}" >&2
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
}
