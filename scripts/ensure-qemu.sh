# shellcheck shell=bash
# Sourced by ./dks, scripts/test and .ci/run (not run on its own). Defines:
#   ensure_qemu   makes sure qemu-system-x86_64 is on PATH, installing Debian's package
#                 qemu-system-x86 non-interactively when it is missing (as root, or with sudo);
#                 otherwise says exactly what is missing and returns non-zero.
#   ensure_cargo  makes sure cargo is on PATH, or says how to get Rust and returns non-zero.

ensure_qemu() {
    if command -v qemu-system-x86_64 >/dev/null 2>&1; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "dks: qemu-system-x86_64 is missing, and this user is not root and has no sudo." >&2
            echo "dks: as root, run: apt-get update && apt-get install -y qemu-system-x86" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "dks: qemu-system-x86_64 is missing and there is no apt-get (not Debian?)." >&2
        echo "dks: install QEMU's x86_64 system emulator with this system's package manager." >&2
        return 1
    fi
    echo "dks: qemu-system-x86_64 is missing; installing Debian's package qemu-system-x86" >&2
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
        ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends qemu-system-x86; then
        echo "dks: installing qemu-system-x86 failed (see apt-get's messages above)." >&2
        return 1
    fi
    if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
        echo "dks: qemu-system-x86 is installed but qemu-system-x86_64 is still not on PATH." >&2
        return 1
    fi
}

ensure_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        return 0
    fi
    echo "dks: cargo is missing. Install Rust (stable) with rustup:" >&2
    echo "dks:   curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2
    echo "dks: then open a new shell (or run: . \"\$HOME/.cargo/env\")." >&2
    return 1
}
