#!/usr/bin/env bash
# The Debian/Ubuntu packages the tests need beyond Python: tclsh (the stand-in Xilinx tools run FINN's Tcl in it),
# Boost program_options (FINN's FIFO-sizing simulation, which the bitstream preflight checks), g++, wget, unzip.
# Installs the missing ones as root; otherwise names them and exits 1.
set -euo pipefail
need=()
command -v tclsh8.6 >/dev/null || command -v tclsh >/dev/null || need+=(tcl8.6)
[ -f /usr/include/boost/program_options.hpp ] || need+=(libboost-program-options-dev)
command -v g++ >/dev/null || need+=(g++)
command -v wget >/dev/null || need+=(wget)
command -v unzip >/dev/null || need+=(unzip)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: missing system packages: ${need[*]} (Debian/Ubuntu: sudo apt-get install ${need[*]})" >&2
    exit 1
fi
echo "installing system packages: ${need[*]}"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
