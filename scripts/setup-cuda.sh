#!/usr/bin/env bash
# Fetches the CUDA build of ONNX Runtime into DEPS_DIR/onnxruntime-cuda, for
# machines with an NVIDIA GPU. The files come from two npm packages, unpacked
# with `npm pack` and tar so that no package script runs:
#   - com.github.asus4.onnxruntime: libonnxruntime.so (ONNX Runtime 1.29.0,
#     which serves the 1.24 C API that onnxruntime_go v1.27.0 requests);
#   - com.github.asus4.onnxruntime.linux-x64-gpu: libonnxruntime_providers_cuda.so
#     and libonnxruntime_providers_shared.so.
# The CUDA provider needs CUDA 13 (libcudart.so.13, libcublas.so.13,
# libcublasLt.so.13, libcurand.so.10) and cuDNN 9 on the library path.
# NOTE: this libonnxruntime.so is built without the classic CUDA provider:
# the CUDA options API that medvseg calls through onnxruntime_go returns
# "CUDA execution provider is not enabled in this build". Its
# libonnxruntime_providers_cuda.so is a plugin provider (it exports
# CreateEpFactories), and registering a plugin needs the execution-provider
# device API, which onnxruntime_go v1.27.0 does not wrap.
# The download is about 330 MB and the unpacked files about 260 MB.
# Usage: scripts/setup-cuda.sh DEPS_DIR
set -euo pipefail

deps=${1:?usage: setup-cuda.sh DEPS_DIR}
version=0.4.9
dir=$deps/onnxruntime-cuda
plugins=package/Plugins/Linux/x64

if [ -f "$dir/libonnxruntime.so" ] && [ -f "$dir/libonnxruntime_providers_cuda.so" ] &&
  [ -f "$dir/libonnxruntime_providers_shared.so" ]; then
  echo "setup-cuda: $dir is complete"
  exit 0
fi

command -v npm >/dev/null || { echo "setup-cuda: npm is needed to fetch ONNX Runtime: apt-get install npm" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "setup-cuda: fetching the CUDA build of ONNX Runtime (npm packages com.github.asus4.onnxruntime*@$version, about 330 MB)"
(cd "$work" && npm pack --silent "com.github.asus4.onnxruntime@$version" \
  "com.github.asus4.onnxruntime.linux-x64-gpu@$version" >/dev/null)

mkdir -p "$work/core" "$work/gpu"
tar --no-same-owner -xzf "$work/com.github.asus4.onnxruntime-$version.tgz" -C "$work/core" "$plugins/libonnxruntime.so"
tar --no-same-owner -xzf "$work/com.github.asus4.onnxruntime.linux-x64-gpu-$version.tgz" -C "$work/gpu" \
  "$plugins/libonnxruntime_providers_cuda.so" "$plugins/libonnxruntime_providers_shared.so"

# Move into place last, so an interrupted run leaves no half-filled folder behind.
mkdir -p "$work/out"
mv "$work/core/$plugins/libonnxruntime.so" "$work/gpu/$plugins/"*.so "$work/out/"
rm -rf "$dir"
mkdir -p "$deps"
mv "$work/out" "$dir"

echo "setup-cuda: done; point --ort-lib or MEDVSEG_ORT_LIB at $dir/libonnxruntime.so"
