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
	$(GO) test -run '^$$' -bench . -benchtime 1x ./web/...

# The demo trains from the mask of frame 1 of the synth clip, scores the
# student against the clip's other masks, then runs the trained model on the
# clip. Training is sized for a CPU: 128x128 input, 12 epochs. The clip is
# cut to 100 frames because the synth lesion leaves the view after about
# frame 115, and propagation from one seed does not pick it up again.
demo: build
	$(BIN) synth --out $(DEMO_DIR) --random-seed 1 --frames 100
	mkdir -p $(DEMO_DIR)/seeds
	cp $(DEMO_DIR)/masks/0001.png $(DEMO_DIR)/seeds/
	$(BIN) train-offline --video $(DEMO_DIR)/clip.mp4 --seeds $(DEMO_DIR)/seeds --gt $(DEMO_DIR)/masks \
		--out $(DEMO_DIR)/run --input-size 128 --epochs 12 --random-seed 1
	$(BIN) process $(DEMO_DIR)/clip.mp4 -o $(DEMO_DIR)/processed.mp4 --model $(DEMO_DIR)/run/model.onnx
	@echo "demo: report in $(DEMO_DIR)/run/report.html, overlays in $(DEMO_DIR)/run/overlay.mp4 and $(DEMO_DIR)/processed.mp4"

clean:
	rm -rf bin out
