#!/usr/bin/env bash
# Regenerate the throwaway example certificates in this directory.
# A new root CA is created each time and its private key is discarded.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
cargo run --quiet --example gen_certs -- certs-example
