# Strata's entry points: `make up` starts Strata, `make test` runs every test.
# Builds go to a cache outside the clone (override CARGO_TARGET_DIR to change it).
export CARGO_TARGET_DIR ?= /var/tmp/strata-target
DATA_DIR ?= /var/lib/strata
CARGO ?= cargo
STRATA := $(CARGO_TARGET_DIR)/release/strata

.PHONY: up test build deps lint bench demo-images down oci-order

deps:
	@scripts/install-deps.sh test
	@scripts/python-deps.sh

build:
	@scripts/install-deps.sh build
	$(CARGO) build --release --bin strata
	@ln -sf strata $(CARGO_TARGET_DIR)/release/strata-runc

# Until the control plane lands, `up` starts what exists: a demo web server container
# from the demo image localhost/httpd.
up: build
	@scripts/install-deps.sh test
	@scripts/up.sh "$(STRATA)" "$(DATA_DIR)"

# localhost/busybox:latest and localhost/httpd:latest, built from Debian's busybox-static.
demo-images: build
	@scripts/demo-images.sh "$(STRATA)" "$(DATA_DIR)"

down:
	-kubectl --kubeconfig "$(DATA_DIR)/kubeconfig.yaml" delete pod demo-web --grace-period=1 --ignore-not-found
	-kill "$$(cat "$(DATA_DIR)/strata-up.pid")" 2>/dev/null; rm -f "$(DATA_DIR)/strata-up.pid"

test: deps
	$(CARGO) build --bin strata
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Re-records crates/strata/oci.order, the functions `strata-runc` runs, which the binary
# is linked with first (see bench/oci-order/main.rs). Needs root.
oci-order:
	bench/oci-order.sh

bench:
	bench/runtime-lifecycle.sh
	bench/image-run.sh
	bench/image-pull.sh
	$(CARGO) bench -p strata-bench --bench store
	$(CARGO) bench -p strata-bench --bench services
