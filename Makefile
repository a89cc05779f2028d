# Elit: see README.md. Every target runs from a fresh Debian machine; targets
# that need Debian packages install them when run as root (scripts/deps.sh).
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 30s

TARGET ?= vm
DB ?= appliance/demo/users.json
DOMAIN ?= example.org

.PHONY: all build run image test test-arm64 soak check bench fuzz clean

all: check test

build:
	$(GO) build -o bin/ ./...

# The main job: the demo (scripts/run.sh says what it shows).
run:
	scripts/run.sh

# A bootable image: make image TARGET=rpi DB=users.json DOMAIN=example.org
image:
	scripts/deps.sh $$(scripts/image-deps.sh)
	$(GO) build -o bin/elit-image ./image/cmd/elit-image
	bin/elit-image build -target $(TARGET) -db $(DB) -domain $(DOMAIN) -o bin/elit-$(TARGET).img

# The one test command: unit and end-to-end tests with the race detector in
# random order, fuzz seed corpora included (go test runs them as tests).
test:
	scripts/deps.sh losetup:mount sfdisk:fdisk swaks:swaks msmtp:msmtp gsasl:gsasl smtp-sink:postfix python3:python3 \
		perl=Net::SSLeay:libnet-ssleay-perl perl=IO::Socket::SSL:libio-socket-ssl-perl \
		py=dkim:python3-dkim py=nacl:python3-nacl py=authheaders:python3-authheaders py=dns:python3-dnspython py=spf:python3-spf py=jsonschema:python3-jsonschema unbound:unbound chromium:chromium \
		$$(scripts/image-deps.sh)
	$(GO) test -race -shuffle=on -count=1 -timeout 45m ./...
	cd third_party/go-smtp && $(GO) test -race -shuffle=on -count=1 ./...

# The arm64 appliance (gokrazy's generic arm64 kernel, UEFI, QEMU's virt
# machine under software emulation) built, booted and relaying a message;
# not in make test for its time (README: how long).
test-arm64:
	scripts/deps.sh $$(scripts/image-deps.sh) qemu-system-aarch64:qemu-system-arm /usr/share/AAVMF/AAVMF_CODE.fd:qemu-efi-aarch64 \
		swaks:swaks smtp-sink:postfix
	ELIT_TEST_ARM64=1 $(GO) test -count=1 -timeout 60m -run 'TestApplianceARM64' -v ./image/cmd/elit-image

# The soak suite (issue 14) at full length: 10 minutes of load at 50
# sessions, 50 SIGKILLs, the destination down, the disk full, the database
# broken, the abuse table with 10 000 connections; make test runs it short.
# Its figures are in docs/benchmarks.md.
soak:
	scripts/deps.sh mount:mount smtp-sink:postfix
	ELIT_SOAK=long $(GO) test -count=1 -timeout 60m -run 'TestSoak$$' -v ./elit/cmd/elit

check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: needs formatting:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd third_party/go-smtp && $(GO) vet ./...
	$(GO) tool staticcheck ./...

# Figures for docs/benchmarks.md.
bench:
	scripts/bench.sh

# Every fuzz target, FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

clean:
	rm -rf bin
