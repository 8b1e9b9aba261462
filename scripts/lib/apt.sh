# Sourced by scripts/test and scripts/release: `apt_install PACKAGE...`
# installs from Debian, running `apt-get update` once first, with sudo when
# not root.

SUDO=()
if ((EUID != 0)) && command -v sudo >/dev/null; then SUDO=(sudo); fi
apt_updated=false
apt_install() {
  if ! $apt_updated; then
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update
    apt_updated=true
  fi
  # Wait for another apt (e.g. a concurrent install) instead of failing on its lock.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@"
}
