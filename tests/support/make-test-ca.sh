#!/bin/sh
# A throwaway CA and a server certificate for localhost / 127.0.0.1 signed by it, for the
# forwarding tests and the bench: make-test-ca.sh DIR NAME writes DIR/ca.pem, DIR/ca.key,
# DIR/server.pem and DIR/server.key (P-256, valid two days).
set -eu
dir=$1
name=$2
mkdir -p "$dir"
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
# shellcheck disable=SC2086 # $ec is a list of options
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=$name test CA" 2>/dev/null
# shellcheck disable=SC2086
openssl req $ec -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 2 -extfile ext.cnf 2>/dev/null
