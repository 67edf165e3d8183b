#!/usr/bin/env bash
# Installs what medvseg needs to build and test on Debian 12, and does nothing
# for the parts already present:
#   - Debian packages: FFmpeg and OpenCV development files, pkg-config, the
#     ffmpeg CLI (tests use ffprobe);
#   - the CPU build of ONNX Runtime, unpacked from the npm package
#     onnxruntime-node into .deps/onnxruntime without running its install script.
# Usage: scripts/setup.sh DEPS_DIR [EXTRA_DEBIAN_PACKAGE ...]
# `make bench` passes opencv-doc, whose box.mp4 is a benchmark input.
set -euo pipefail

deps=${1:?usage: setup.sh DEPS_DIR [EXTRA_DEBIAN_PACKAGE ...]}
shift
ort_version=1.24.1
ort_lib=$deps/onnxruntime/libonnxruntime.so.1

apt_packages=(
  pkg-config ffmpeg
  libavcodec-dev libavformat-dev libavdevice-dev libavfilter-dev
  libavutil-dev libswscale-dev libswresample-dev
  libopencv-dev libtorch-dev
  chromium
  "$@"
)

missing=()
for p in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: run as root or install sudo, then: apt-get install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -f "$ort_lib" ]; then
  command -v npm >/dev/null || { echo "setup: npm is needed to fetch ONNX Runtime: apt-get install npm" >&2; exit 1; }
  echo "setup: fetching ONNX Runtime $ort_version (CPU) from the npm package onnxruntime-node"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # npm pack downloads the tarball and checks its integrity hash; no package script runs.
  (cd "$work" && npm pack --silent "onnxruntime-node@$ort_version" >/dev/null)
  tar -xzf "$work/onnxruntime-node-$ort_version.tgz" -C "$work" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  mkdir -p "$(dirname "$ort_lib")"
  mv "$work/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ort_lib.partial"
  mv "$ort_lib.partial" "$ort_lib"
fi
