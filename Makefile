# Elit: see README.md. Every target runs from a fresh Debian machine; targets
# that need Debian packages install them when run as root (scripts/deps.sh).
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 30s

TARGET ?= vm
DB ?= appliance/demo/users.json
DOMAIN ?= example.org

.PHONY: all build run image test check bench fuzz clean

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
		py=dkim:python3-dkim py=nacl:python3-nacl py=authheaders:python3-authheaders py=dns:python3-dnspython py=spf:python3-spf \
		$$(scripts/image-deps.sh)
	$(GO) test -race -shuffle=on -count=1 -timeout 45m ./...

check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: needs formatting:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Figures for docs/benchmarks.md.
bench:
	scripts/bench.sh

# Every fuzz target, FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

clean:
	rm -rf bin
