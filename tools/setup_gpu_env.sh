#!/usr/bin/env bash
# Installs what the kernel test harness needs on a GPU-less Debian machine (idempotent):
#   mesa-vulkan-drivers  -> lavapipe, the CPU Vulkan driver Deno's WebGPU accepts (shader-f16)
#   chromium             -> headless Chromium whose WebGPU runs on SwiftShader
# Deno itself comes from npm (@deno/linux-x64-glibc); playwright from the project's venv.
set -euo pipefail

need=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s libvulkan1 >/dev/null 2>&1 || need+=(libvulkan1)

if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need[@]}"
fi

echo "gpu env ready: $(dpkg-query -W -f='${Package} ${Version}, ' mesa-vulkan-drivers chromium)"
