#!/usr/bin/env bash
# Installs what patchbay needs on a Debian 12 host: QEMU, the kernel build
# toolchain, Debian's linux-source-6.12, debootstrap and e2fsprogs.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

packages=(
  qemu-system-x86 qemu-utils debootstrap e2fsprogs linux-source-6.12
  gcc make flex bison bc libelf-dev libssl-dev cpio ccache xz-utils
  patch git openssh-client ca-certificates
  chromium  # headless screenshot test of report.html
  shellcheck  # the CI template test lints the workflow's run scripts
  b4        # --input series=b4:MSGID (b4 am)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "ci/setup.sh: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  echo "ci/setup.sh: Go is not installed (need Go 1.26 or newer on PATH)" >&2
  exit 1
fi
echo "ci/setup.sh: ok ($(go version | cut -d' ' -f3), $(qemu-system-x86_64 --version | head -1))"
