# medvseg build, test and demo. `make demo` and `make test` install what they
# need first (scripts/setup.sh), so both work on a fresh Debian 12 machine.

GO        ?= go
DEPS      := $(CURDIR)/.deps
ORT_LIB   := $(DEPS)/onnxruntime/libonnxruntime.so.1
BIN       := bin/medvseg
LDFLAGS   := -X github.com/medvseg/medvseg/segment.DefaultLibraryPath=$(ORT_LIB)
DEMO_DIR  ?= out/demo
TEST_TIMEOUT ?= 35m

# Tests load the same ONNX Runtime library as the binary.
export MEDVSEG_ORT_LIB ?= $(ORT_LIB)

.PHONY: all setup setup-cuda build test demo bench clean

all: build

setup:
	@scripts/setup.sh $(DEPS)

# The CUDA build of ONNX Runtime, for machines with an NVIDIA GPU, CUDA 13 and
# cuDNN 9; run medvseg with --ort-lib $(DEPS)/onnxruntime-cuda/libonnxruntime.so.
setup-cuda:
	@scripts/setup-cuda.sh $(DEPS)

build: setup
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/medvseg

test: setup
	$(GO) vet ./...
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

# Benchmarks; the results page is docs/results.md. The loop benchmark runs
# whole videos, so one iteration each is enough.
bench:
	@scripts/setup.sh $(DEPS) opencv-doc
	$(GO) test -run '^$$' -bench . -benchtime 3x ./codec/... ./segment/... ./trainer/...
	$(GO) test -run '^$$' -bench . -benchtime 1x ./stream/...

demo: build
	$(BIN) synth --out $(DEMO_DIR) --random-seed 1
	$(BIN) extract $(DEMO_DIR)/clip.mp4 --out $(DEMO_DIR)/extracted
	@echo "demo: synth clip, frames and masks in $(DEMO_DIR); extracted frames in $(DEMO_DIR)/extracted/frames"

clean:
	rm -rf bin out
