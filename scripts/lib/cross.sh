# Sourced by scripts/release and scripts/test: the tools that build and lint
# for the other targets from this Linux machine (docs/release.md, docs/macos.md).
#
#   cross_tools      the Rust targets (rustup), zig and cargo-zigbuild (PyPI,
#                    pinned, in a venv), put on PATH; ruby (Debian), which
#                    checks the Homebrew formula's syntax
#   cross_stub_sdk   writes the stand-in macOS SDK; MAC_ENV is then what a
#                    Mac build or lint runs with (env "${MAC_ENV[@]}" cargo …)
#
# Installs only what is missing, so it is safe to run again; everything lives
# under ${XDG_CACHE_HOME:-~/.cache}/assumed-test and may be deleted at will.
# Needs section() from the script that sources it, and scripts/lib/apt.sh.

# Pinned: a new zig can change what the linker writes (it once stamped
# minos 15.0 when no deployment target was set), so a release moves to a new
# one on purpose, with scripts/check-artefacts run on the result.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
# The oldest macOS the Mac binary loads on: the first on Apple silicon, so
# one minimum serves both slices (docs/release.md).
MACOS_MIN=11.0
CROSS_TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin)
MAC_TARGETS=(aarch64-apple-darwin x86_64-apple-darwin)

CROSS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/assumed-test"
ZIG_VENV="${ASSUMED_ZIG_VENV:-$CROSS_CACHE/zig-venv}"
STUB_SDK="$CROSS_CACHE/macos-sdk-stubs"

zig_tools_ok() {
  [[ "$("$ZIG_VENV/bin/python3" -m ziglang version 2>/dev/null)" == "$ZIGLANG_VERSION" ]] &&
    [[ "$("$ZIG_VENV/bin/cargo-zigbuild" --version 2>/dev/null)" == "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]]
}

cross_tools() {
  section "Cross tools"
  local installed missing=() target
  installed=$(rustup target list --installed)
  for target in "${CROSS_TARGETS[@]}"; do
    grep -qx "$target" <<<"$installed" || missing+=("$target")
  done
  if ((${#missing[@]})); then rustup target add "${missing[@]}"; fi
  if ! zig_tools_ok; then
    if [[ ! -x "$ZIG_VENV/bin/python3" ]]; then
      if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3 python3-venv; fi
      python3 -m venv "$ZIG_VENV"
    fi
    echo "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $ZIG_VENV"
    "$ZIG_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check \
      "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
    zig_tools_ok || { echo "zig or cargo-zigbuild still missing from $ZIG_VENV after install" >&2; exit 1; }
  fi
  if ! command -v ruby >/dev/null; then apt_install ruby; fi
  # cargo-zigbuild runs `python3 -m ziglang` when there is no `zig` on PATH:
  # the venv's python3 first finds the pinned one.
  export PATH="$ZIG_VENV/bin:$PATH"
  echo "zig $(python3 -m ziglang version), $(cargo-zigbuild --version)"
}

# Rebuilt each time (seconds): the stubs follow Cargo.lock.
cross_stub_sdk() {
  section "Stand-in macOS SDK"
  python3 scripts/macos_stubs.py "$STUB_SDK"
}
# SDKROOT is the stub tree (frameworks; zig brings libSystem). Without a
# deployment target zig stamps its own newest macOS as the minimum. The Mac
# lint runs with it too, so that it checks what the Mac build compiles.
MAC_ENV=(SDKROOT="$STUB_SDK" MACOSX_DEPLOYMENT_TARGET="$MACOS_MIN")
