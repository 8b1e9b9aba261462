#!/usr/bin/env python3
"""Writes a stand-in macOS SDK: text stubs (.tbd, v4) of the frameworks the
Mac build links, so a Mac binary can be linked on Linux (cargo-zigbuild).

    scripts/macos_stubs.py OUT_DIR [TARGET...]

No registry here ships Apple's SDK, and zig carries only libSystem's stubs.
A framework's stub only has to name the install path a Mac loads it from and
the symbols the binary imports from it; the symbols are exactly what the
`-sys` crates in Cargo.lock declare in their `extern` blocks, so they are read
from those crates' sources (cargo's registry copy, found by `cargo metadata`
for the Mac targets, so a new Mac-only `-sys` crate is picked up by itself).

OUT_DIR becomes an SDKROOT: System/Library/Frameworks/X.framework/X.tbd.
Plain libraries get no stub here: zig brings libSystem (libc, libm, libresolv
and the rest of /usr/lib/system) and cargo-zigbuild brings libiconv, each
with its real install path; a stub of ours would shadow theirs with a wrong
one (/usr/lib/libiconv.dylib is a symlink in Apple's SDK; binaries load
/usr/lib/libiconv.2.dylib).

What a stub proves and what it does not: the binary links, and records the
real install path of each framework. A stub lists every symbol the crate
declares, cfg'd or not, so a symbol that the real framework lacks on the
oldest supported macOS is not caught here; only a run on a Mac catches that.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_TARGETS = ["aarch64-apple-darwin", "x86_64-apple-darwin"]
# The architectures every stub claims; cargo's two Mac targets.
TBD_TARGETS = "[ x86_64-macos, arm64-macos ]"
FRAMEWORK_ATTR = re.compile(r'link\s*\(\s*name\s*=\s*"([^"]+)"\s*,\s*kind\s*=\s*"framework"')
BUILD_RS_FRAMEWORK = re.compile(r'rustc-link-lib=framework=([A-Za-z0-9_]+)')
EXTERN_BLOCK = re.compile(r'(?:unsafe\s+)?extern\s+"(?:C|system)"\s*\{')
ITEM = re.compile(
    r'\b(?:pub(?:\s*\([^)]*\))?\s+)?(?:safe\s+|unsafe\s+)?(fn|static(?:\s+mut)?)\s+([A-Za-z_][A-Za-z0-9_]*)'
)
LINK_NAME = re.compile(r'link_name\s*=\s*"([^"]+)"')


def strip_comments(text):
    # Good enough for -sys crates: no `//` or `/*` inside their string literals.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def block_end(text, open_brace):
    depth = 0
    for i in range(open_brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced braces")


def extern_blocks(text):
    """(attributes just before the block, its body) for each extern block."""
    for m in EXTERN_BLOCK.finditer(text):
        start = max(text.rfind(";", 0, m.start()), text.rfind("}", 0, m.start())) + 1
        end = block_end(text, m.end() - 1)
        yield text[start : m.start()], text[m.end() : end]


def symbols_in(body):
    """Mach-O names (leading underscore) of the items an extern block declares.

    Items end with `;`. An item's `link_name` (also behind cfg_attr, e.g. the
    `$LEGACYMAC` variants of security-framework-sys) is exported as well as
    its Rust name: a stub may list more than the binary imports.
    """
    names = set()
    for item in body.split(";"):
        m = ITEM.search(item)
        if not m:
            continue
        names.add("_" + m.group(2))
        names.update("_" + n for n in LINK_NAME.findall(item[: m.start()]))
    return names


def mac_packages(targets):
    """Source dirs of the packages a normal (non-dev, non-build) dependency
    walk from the workspace reaches on any of the Mac targets."""
    dirs = {}
    for target in targets:
        meta = json.loads(
            subprocess.run(
                ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", target],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        by_id = {p["id"]: p for p in meta["packages"]}
        nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
        todo = list(meta["workspace_members"])
        seen = set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in nodes[pid]["deps"]:
                if any(k["kind"] is None for k in dep["dep_kinds"]):
                    todo.append(dep["pkg"])
        for pid in seen - set(meta["workspace_members"]):
            p = by_id[pid]
            dirs[p["name"] + "-" + p["version"]] = Path(p["manifest_path"]).parent
    return dirs


def scan(pkg, root):
    """{framework: symbols} declared by one package."""
    sources = []
    for path in sorted(root.rglob("*.rs")):
        if any(part in ("tests", "examples", "benches") for part in path.relative_to(root).parts[:-1]):
            continue
        raw = path.read_text(errors="replace")
        if "extern" in raw or "rustc-link-lib" in raw:
            sources.append((path, strip_comments(raw)))
    frameworks = set()
    for _, text in sources:
        frameworks.update(FRAMEWORK_ATTR.findall(text))
        frameworks.update(BUILD_RS_FRAMEWORK.findall(text))
    found = {}
    for path, text in sources:
        for attrs, body in extern_blocks(text):
            own = FRAMEWORK_ATTR.findall(attrs)
            if own:
                owner = own[0]
            elif len(frameworks) == 1:
                # The crate links its one framework once (an empty extern block
                # in lib.rs) and declares its symbols module by module.
                owner = next(iter(frameworks))
            elif frameworks:
                sys.exit(
                    f"macos_stubs: {pkg} links several frameworks ({', '.join(sorted(frameworks))}) and "
                    f"{path} has an extern block naming none of them: teach scripts/macos_stubs.py which it is"
                )
            else:
                continue  # a plain library's block (libc's iconv): see the module doc
            found.setdefault(owner, set()).update(symbols_in(body))
    return found


def tbd(install_name, symbols):
    listed = ", ".join(f"'{s}'" for s in sorted(symbols))
    exports = f"exports:\n  - targets:         {TBD_TARGETS}\n    symbols:         [ {listed} ]\n" if symbols else ""
    return (
        "--- !tapi-tbd\n"
        "tbd-version:     4\n"
        f"targets:         {TBD_TARGETS}\n"
        f"install-name:    '{install_name}'\n"
        "current-version: 1\n"
        "compatibility-version: 1\n"
        f"{exports}"
        "...\n"
    )


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    targets = sys.argv[2:] or DEFAULT_TARGETS
    collected = {}
    for pkg, root in sorted(mac_packages(targets).items()):
        for owner, symbols in scan(pkg, root).items():
            collected.setdefault(owner, set()).update(symbols)
    # Built beside OUT_DIR and renamed into place, so a cargo that reads it
    # never sees half a tree, and a rerun replaces stubs a lock change made stale.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    for name, symbols in sorted(collected.items()):
        path = tmp / f"System/Library/Frameworks/{name}.framework/{name}.tbd"
        install = f"/System/Library/Frameworks/{name}.framework/Versions/A/{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tbd(install, symbols))
        print(f"macos_stubs: {path.relative_to(tmp)}: {len(symbols)} symbols", file=sys.stderr)
    (tmp / "SDKSettings.json").write_text('{"Version":"11.0","CanonicalName":"macosx11.0"}\n')
    if out.exists():
        old = out.with_name(out.name + ".old")
        subprocess.run(["rm", "-rf", str(old)], check=True)
        os.rename(out, old)
        os.rename(tmp, out)
        subprocess.run(["rm", "-rf", str(old)], check=True)
    else:
        os.rename(tmp, out)


if __name__ == "__main__":
    main()
