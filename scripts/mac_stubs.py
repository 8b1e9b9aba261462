#!/usr/bin/env python3
"""Stub macOS frameworks for linking `assumed` for macOS from Linux with
zig, which ships libSystem but no frameworks (used by scripts/mac-check).

    scripts/mac_stubs.py stubs TARGET OUT_DIR   write OUT_DIR/X.framework/X.tbd
    scripts/mac_stubs.py dylibs BINARY          list a Mach-O's LC_LOAD_DYLIBs

For every crate the build for TARGET uses (cargo metadata), it finds the
frameworks the crate links (`#[link(name = "X", kind = "framework")]`,
`cargo:rustc-link-lib=framework=X`) and the symbols its `extern` blocks
declare, and writes OUT_DIR/X.framework/X.tbd exporting them. A symbol is
put in a framework only when its name has that framework's prefix, so that
nothing libSystem exports is claimed by a framework (the binary records
which library each symbol comes from, and dyld looks for it there).

The stubs only let the linker resolve names: the binary is not run here.
"""

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

# Where each framework's symbols live on macOS, by name prefix, and its
# install name (what the binary records as the library to load).
FRAMEWORKS = {
    "CoreFoundation": (
        ("CF", "kCF", "__CF", "__kCF"),
        "/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation",
    ),
    "Security": (
        ("Sec", "kSec", "SSL", "Authorization", "kAuthorization", "CMS", "kCMS", "_Sec"),
        "/System/Library/Frameworks/Security.framework/Versions/A/Security",
    ),
}

LINK_ATTR = re.compile(r'link\(\s*name\s*=\s*"([^"]+)"\s*,\s*kind\s*=\s*"framework"')
LINK_LINE = re.compile(r"rustc-link-lib=framework=([A-Za-z0-9_]+)")
EXTERN = re.compile(r'extern\s+"C"\s*\{')
ITEM = re.compile(r"\b(?:fn|static(?:\s+mut)?)\s+([A-Za-z_][A-Za-z0-9_]*)\s*[(:<]")


def crate_dirs(target):
    """The source folders of the packages a build for `target` uses."""
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--filter-platform", target],
        )
    )
    used = {node["id"] for node in meta["resolve"]["nodes"]}
    return [
        Path(p["manifest_path"]).parent
        for p in meta["packages"]
        if p["id"] in used
    ]


def extern_items(text):
    """The names declared in the text's `extern "C" { … }` blocks."""
    names = set()
    for match in EXTERN.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        names.update(ITEM.findall(text[match.end() : i]))
    return names


def scan(dirs):
    frameworks, symbols = set(), set()
    for folder in dirs:
        for path in folder.rglob("*.rs"):
            if "target" in path.parts:
                continue
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            frameworks.update(LINK_ATTR.findall(text))
            frameworks.update(LINK_LINE.findall(text))
            symbols.update(extern_items(text))
    return frameworks, symbols


def tbd(install_name, symbols):
    targets = "[ x86_64-macos, arm64-macos ]"
    listed = ",\n                       ".join("_" + s for s in sorted(symbols))
    return (
        "--- !tapi-tbd\n"
        "tbd-version:     4\n"
        f"targets:         {targets}\n"
        f"install-name:    '{install_name}'\n"
        "current-version: 1\n"
        "exports:\n"
        f"  - targets:         {targets}\n"
        f"    symbols:         [ {listed} ]\n"
        "...\n"
    )


def dylibs(binary):
    """The libraries a 64-bit Mach-O file loads (its LC_LOAD_DYLIB and
    LC_LOAD_WEAK_DYLIB commands), to show what the link recorded."""
    data = Path(binary).read_bytes()
    if data[:4] != b"\xcf\xfa\xed\xfe":
        sys.exit(f"{binary} is not a 64-bit little-endian Mach-O file")
    (ncmds,) = struct.unpack_from("<I", data, 16)
    offset, names = 32, []
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, offset)
        if cmd in (0xC, 0x80000018):
            (name_at,) = struct.unpack_from("<I", data, offset + 8)
            raw = data[offset + name_at : offset + size]
            names.append(raw.split(b"\0", 1)[0].decode())
        offset += size
    return names


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "dylibs":
        for name in dylibs(sys.argv[2]):
            print(name)
        return
    if len(sys.argv) != 4 or sys.argv[1] != "stubs":
        sys.exit(__doc__)
    target, out = sys.argv[2], Path(sys.argv[3])
    frameworks, symbols = scan(crate_dirs(target))
    # ServiceManagement is linked only behind a security-framework feature
    # that is off; it has no stub and must stay unused.
    frameworks.discard("ServiceManagement")
    unknown = frameworks - FRAMEWORKS.keys()
    if unknown:
        sys.exit(
            f"a dependency now links {sorted(unknown)}: add its symbol prefixes "
            "and install name to FRAMEWORKS in scripts/mac_stubs.py"
        )
    for name in sorted(frameworks):
        prefixes, install_name = FRAMEWORKS[name]
        own = {s for s in symbols if s.startswith(prefixes)}
        folder = out / f"{name}.framework"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.tbd").write_text(tbd(install_name, own))
        print(f"{folder}/{name}.tbd: {len(own)} symbols")


if __name__ == "__main__":
    main()
