#!/usr/bin/env bash
# Installs everything building buildwatch needs on a fresh Debian-based machine, as root:
# LLVM 22 (for bpf-linker), the pinned Rust toolchains and bpf-linker, and the package tools the
# end-to-end tests use. With --bench, also the alternatives `cargo xtask bench` measures
# buildwatch against (strace, bpftrace, auditd; auditd's service is not started). Safe to run
# again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (it installs packages, and buildwatch needs root to load eBPF)" >&2
    exit 1
fi

if ! dpkg -s llvm-22-dev libpolly-22-dev >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq llvm-22-dev libpolly-22-dev >/dev/null
fi

# What the end-to-end tests build and install for real: npm packages, a pip sdist with a C
# extension, make/cc/git, a DNS resolver. Installed from Debian only when missing (a machine's own Node.js or
# Python is kept).
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || missing+=(python3-dev)
for tool in cc make git curl tar; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$([ "$tool" = cc ] && echo gcc || echo "$tool")")
done
# The DNS tests' resolver and client (dnsmasq-base has no service that would start by itself).
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
# `--events -` is tested piped into a real jq.
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
# `sudo buildwatch -- …` is tested with a real sudo, run by an ordinary user.
command -v sudo >/dev/null 2>&1 || missing+=(sudo)
# Forwarding is tested against a real rsyslog receiving RFC 5425 syslog over TLS (gnutls); the
# test starts its own rsyslogd on loopback, and the package's service must not start.
[ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || missing+=(rsyslog-gnutls)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [[ " ${missing[*]} " == *" rsyslog "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
if [ "${1:-}" = --bench ]; then
    command -v strace >/dev/null 2>&1 || missing+=(strace)
    command -v bpftrace >/dev/null 2>&1 || missing+=(bpftrace)
    [ -x /usr/sbin/auditd ] || [ -x /sbin/auditd ] || missing+=(auditd)
    # The bench starts its own auditd with a private configuration; a system auditd started by
    # the package would audit everything, bare runs included.
    if [[ " ${missing[*]} " == *" auditd "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Validators and stand-ins the tests run, pinned, in their own directory (never the system's
# Python or global npm): CycloneDX's library checks the release SBOM against the schema; PyYAML
# reads action.yml and the GitLab template for tests/support/ci_steps.py; Microsoft's SARIF
# multitool validates SARIF with GitHub code scanning's rules; the published OCSF 1.7.0 schema
# (in pydantic-ocsf; only its JSON is read, so without pydantic) and ECS 9.4.0's field table
# (Elastic's @elastic/ecs) check the forwarded SIEM records.
tools=${BUILDWATCH_TOOLS:-/opt/buildwatch-tools}
if ! "$tools/venv/bin/python" -c 'import cyclonedx.validation.json, yaml' 2>/dev/null \
    || ! [ -f "$tools/venv/lib/python3"*/site-packages/ocsf/schemas/v1_7_0.json ]; then
    rm -rf "$tools/venv"
    if ! python3 -m venv "$tools/venv" >/dev/null 2>&1; then
        # Debian's Python makes venvs only with python3-venv.
        rm -rf "$tools/venv"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$tools/venv"
    fi
    "$tools/venv/bin/pip" install -q --disable-pip-version-check \
        'cyclonedx-python-lib[json-validation]==11.12.0' 'PyYAML==6.0.3'
    "$tools/venv/bin/pip" install -q --disable-pip-version-check --no-deps 'pydantic-ocsf==3.0.0'
fi
multitool="$tools/npm/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool"
ecs_pkg="$tools/npm/node_modules/@elastic/ecs/package.json"
if ! [ -x "$multitool" ] || ! "$multitool" --version 2>/dev/null | grep -q '^SARIF Multitool 5\.7\.0' \
    || ! grep -q '"version": "9\.4\.0"' "$ecs_pkg" 2>/dev/null; then
    rm -rf "$tools/npm"
    mkdir -p "$tools/npm"
    npm install --prefix "$tools/npm" --no-audit --no-fund --silent \
        @microsoft/sarif-multitool@5.7.0 @elastic/ecs@9.4.0
    # Its package's postinstall (which npm may not run) only makes the binary executable.
    chmod 0755 "$multitool"
fi

# rustup's usual home may not be on PATH in a minimal (CI) environment.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v rustup >/dev/null 2>&1; then
    echo "setup.sh: rustup is required (https://rustup.rs)" >&2
    exit 1
fi
# Userspace toolchain (rust-toolchain.toml) and the eBPF nightly, whose LLVM 22 matches
# bpf-linker's (monitor-ebpf/rust-toolchain.toml).
rustup toolchain install 1.99.1 --profile minimal -c clippy,rustfmt >/dev/null
rustup toolchain install nightly-2026-07-01 --profile minimal -c rust-src,rustfmt >/dev/null

export PATH="/usr/lib/llvm-22/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! bpf-linker --version 2>/dev/null | grep -q '^bpf-linker 0\.13\.0'; then
    cargo +1.99.1 install bpf-linker --version 0.13.0 --locked \
        --no-default-features --features llvm-22
fi
# The fuzz targets in fuzz/ (`cargo xtask fuzz`, also run briefly by `cargo xtask test`).
if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
    cargo +1.99.1 install cargo-fuzz --version 0.13.2 --locked
fi
