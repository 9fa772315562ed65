# SPDX-License-Identifier: Apache-2.0
# Thin wrapper over Meson: `make` builds into ./bin, `make up` starts the all-in-one cloud,
# `make test` runs every test (unit, ASan+UBSan, fuzz, integration) and prints `N passed, N failed`.
BUILD    ?= build
DATA_DIR ?= ./var
BINS      = sov sov-demo sov-s3 sov-block sov-api sov-compute sov-net

.PHONY: all bootstrap up down test bench fmt clean guest-image

all: bootstrap
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) --buildtype=debugoptimized >/dev/null
	ninja -C $(BUILD)
	@mkdir -p bin && for b in $(BINS); do install -m 0755 $$(find $(BUILD)/src -type f -name $$b -perm -u+x | head -n1) bin/$$b; done

bootstrap:
	@scripts/bootstrap

# The tiny guest (kernel, busybox, dropbear and our init on a syslinux FAT disk) from Debian
# packages only; `make up` uploads it to the image service as sov-tiny.
guest-image: bootstrap
	scripts/guest-image $(DATA_DIR)/sov-tiny.raw

up: all
	./bin/sov up --data-dir $(DATA_DIR)
	scripts/upload-guest $(DATA_DIR)

down:
	./bin/sov down --data-dir $(DATA_DIR)

test: all
	@scripts/run-tests

# Every bench/*.sh in turn (each ends with its own `ratio` line); `make bench-s3` runs one.
bench: all
	@set -e; for b in bench/*.sh; do echo "== $$b"; $$b; done

bench-%: all
	bench/$*.sh

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz bin
