# xgpu: GPU pooling across hosts. `make help` lists the targets.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin
PKGS      := ./...
TESTFLAGS ?= -race -shuffle=on -timeout 25m

.PHONY: help build shim test test-gpu gpu-bundle bench generate generate-ptx lint check demo fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

build: ## build bin/xgpu
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/xgpu ./cmd/xgpu

shim: ## build bin/libxgpu.so, bin/libcudart.so.13 and bin/libcuda.so.1, the CUDA shim (docs/cuda-shim.md)
	GO=$(GO) runtime/cudart/build.sh $(BIN)

test: ## run every test that needs no GPU (race detector on, shuffled)
	$(GO) test $(TESTFLAGS) $(PKGS)

test-gpu: ## run the tests that need a GPU (build tag cuda), on a GPU machine with Go
	$(GO) test -tags cuda -timeout 25m -v $(PKGS)

gpu-bundle: ## build the GPU tests for a GPU machine without Go (dist/gpu.tar.xz; run hack/gpu-run.sh there)
	hack/gpu-bundle.sh

# bench: with GPUs (nvidia-smi lists one) and nvcc, the cuda variant: the
# native baseline program is built into $(BIN) and `xgpu bench --backend
# cuda` compares with it in the same run; otherwise the host variant. Without
# Go (a GPU machine), $(BIN)/xgpu must be there already: make bench BIN=dist/gpu.
BENCH_ARCH  ?= sm_90
BENCHFLAGS  ?=

bench: $(if $(shell command -v $(GO) 2>/dev/null),build) ## measure xgpu against baselines of the same run, native CUDA on a GPU machine (see docs/bench.md)
	@nvcc=$$(command -v $(NVCC) || ls /usr/local/cuda/bin/nvcc 2>/dev/null); \
	if nvidia-smi -L 2>/dev/null | grep -q '^GPU' && [ -n "$$nvcc" ]; then \
		set -ex; \
		"$$nvcc" -O2 -arch=$(BENCH_ARCH) -cudart=shared -o $(BIN)/cudabench examples/bench/cudabench.cu; \
		$(BIN)/xgpu bench --backend cuda --native $(BIN)/cudabench --json $(BIN)/bench.json $(BENCHFLAGS); \
	else \
		set -x; \
		$(BIN)/xgpu bench --json $(BIN)/bench.json $(BENCHFLAGS); \
	fi

generate: ## regenerate protobuf and other generated code
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) generate $(PKGS)

NVCC      ?= nvcc
PTX_ARCH  ?= compute_90

generate-ptx: ## GPU machine only (needs the CUDA toolkit): regenerate the worker's embedded reduction kernels from server/cuda/kernels/reduce.cu
	$(NVCC) -ptx -arch=$(PTX_ARCH) -o server/cuda/kernels/reduce_sm90.ptx server/cuda/kernels/reduce.cu

lint: ## gofmt, go vet and the layering rules
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	CGO_ENABLED=0 $(GO) build ./...
	$(GO) test -run TestLayering ./internal/layering

check: lint ## lint, then check that go.mod and generated code are current
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
	$(MAKE) generate && git diff --exit-code

demo: build ## start a loopback demo cluster on the host backend (16 hosts x 4 GPUs)
	$(BIN)/xgpu demo

fuzz: ## run each fuzz target for a while (FUZZTIME=1m)
	$(GO) test -run '^$$' -fuzz FuzzParseHeader -fuzztime $${FUZZTIME:-1m} ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzReader -fuzztime $${FUZZTIME:-1m} ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-1m} ./devicemap

clean: ## remove build outputs
	rm -rf $(BIN)
