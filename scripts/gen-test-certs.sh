#!/usr/bin/env bash
# Regenerates the test-only TLS fixtures in crates/batchd/tests/fixtures/tls: a small CA and two
# server certificates it signed for localhost / 127.0.0.1 (two, so that a reload can be told
# from no reload). Valid for 100 years so that the committed files never expire under the tests.
# The CA's private key is thrown away: nothing else can ever be signed with it.
#
#   server-a.pem  leaf then CA (a chain, leaf first); server-a.key: P-256, PKCS#8
#   server-b.pem  leaf only;                          server-b.key: RSA 2048, PKCS#1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/crates/batchd/tests/fixtures/tls"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
DAYS=36500
mkdir -p "$OUT"

cat >"$WORK/ca.ext" <<'EXT'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT
cat >"$WORK/leaf.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT

openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key"
openssl req -new -x509 -key "$WORK/ca.key" -sha256 -days "$DAYS" \
  -subj "/CN=batchd test CA" -extensions v3_ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\n'; cat "$WORK/ca.ext") \
  -out "$OUT/ca.pem"

# leaf NAME KEYFILE: a certificate for localhost signed by the CA, into $WORK/NAME.crt
leaf() {
  openssl req -new -key "$2" -subj "/CN=batchd test server $1" -out "$WORK/$1.csr"
  openssl x509 -req -in "$WORK/$1.csr" -CA "$OUT/ca.pem" -CAkey "$WORK/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -sha256 -days "$DAYS" -extfile "$WORK/leaf.ext" -out "$WORK/$1.crt"
}

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OUT/server-a.key"
leaf a "$OUT/server-a.key"
cat "$WORK/a.crt" "$OUT/ca.pem" >"$OUT/server-a.pem"

openssl genrsa -traditional -out "$OUT/server-b.key" 2048
leaf b "$OUT/server-b.key"
cp "$WORK/b.crt" "$OUT/server-b.pem"

cat >"$OUT/README.md" <<'TXT'
Test-only TLS fixtures, made by `scripts/gen-test-certs.sh`: a CA whose key was thrown away and
two server certificates for `localhost` / `127.0.0.1`. Never use them for anything but tests.
TXT
echo "wrote $OUT"
