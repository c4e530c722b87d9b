# shellcheck shell=bash
# Sourced by ./dks, scripts/test and .ci/run (not run on its own). Defines:
#   ensure_qemu   makes sure qemu-system-x86_64 is on PATH, installing Debian's package
#                 qemu-system-x86 non-interactively when it is missing (as root, or with sudo);
#                 otherwise says exactly what is missing and returns non-zero.
#   ensure_bpf_toolchain
#                 makes sure the BPF part of `dks census` can be built: clang (compiles the BPF
#                 programs), make, pkg-config and the libelf and zlib headers (build the libbpf
#                 that the libbpf-sys crate vendors); installs Debian's clang, make, pkg-config,
#                 libelf-dev and zlib1g-dev when one is missing, like ensure_qemu.
#   ensure_cargo  makes sure cargo is on PATH, or says how to get Rust and returns non-zero.

# apt_install WHAT PACKAGE...: installs Debian packages non-interactively (as root, or with
# sudo); WHAT says what is missing, for the messages.
apt_install() {
    local what="$1"
    shift
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "dks: $what is missing, and this user is not root and has no sudo." >&2
            echo "dks: as root, run: apt-get update && apt-get install -y $*" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "dks: $what is missing and there is no apt-get (not Debian?)." >&2
        echo "dks: install the equivalent of Debian's $* with this system's package manager." >&2
        return 1
    fi
    echo "dks: $what is missing; installing Debian's $*" >&2
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
        ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "$@"; then
        echo "dks: installing $* failed (see apt-get's messages above)." >&2
        return 1
    fi
}

ensure_bpf_toolchain() {
    local missing=()
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    [ -e /usr/include/libelf.h ] || [ -e /usr/include/libelf/libelf.h ] || missing+=(libelf-dev)
    [ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    apt_install "the BPF build toolchain of dks census (${missing[*]})" "${missing[@]}" || return 1
    if ! command -v clang >/dev/null 2>&1; then
        echo "dks: clang is installed but still not on PATH." >&2
        return 1
    fi
}

ensure_qemu() {
    if command -v qemu-system-x86_64 >/dev/null 2>&1; then
        return 0
    fi
    apt_install "qemu-system-x86_64" qemu-system-x86 || return 1
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
