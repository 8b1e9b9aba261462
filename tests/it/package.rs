//! The Debian package (`scripts/package deb`, docs/install.md): what it
//! holds and where, and its user units as systemd reads them. Installing and
//! removing it on a clean Debian 12 is in `docker.rs`.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::harness::daemon::binary;
use crate::harness::{run, run_ok};

/// Builds the .deb from the binary `cargo test` built, into `out`; its path.
pub async fn build_deb(out: &Path) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package");
    let output = run_ok(
        Command::new(script)
            .args(["deb", "--binary", binary(), "--out"])
            .arg(out),
    )
    .await;
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Where each kind of file must be for Debian's tools to find it.
pub const EXPECTED: &[&str] = &[
    "usr/bin/assumed",
    "usr/lib/systemd/user/assumed.service",
    "usr/lib/systemd/user/assumed.socket",
    "usr/share/bash-completion/completions/assumed",
    "usr/share/zsh/vendor-completions/_assumed",
    "usr/share/fish/vendor_completions.d/assumed.fish",
    "usr/share/man/man1/assumed.1.gz",
    "usr/share/man/man1/assumed-exec.1.gz",
    "usr/share/doc/assumed/copyright",
    "usr/share/doc/assumed/README.md",
    "usr/share/doc/assumed/docs/install.md",
    "usr/share/doc/assumed/examples/config.toml",
];

#[tokio::test]
async fn the_deb_holds_everything_where_debian_looks_and_valid_units() {
    let dir = tempfile::tempdir().expect("dir");
    let deb = build_deb(dir.path()).await;
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    assert!(
        name.starts_with(&format!("assumed_{}_", env!("CARGO_PKG_VERSION")))
            && name.ends_with(".deb"),
        "{name}"
    );

    let info = run(Command::new("dpkg-deb").args(["--field"]).arg(&deb)).await;
    let info = String::from_utf8_lossy(&info.stdout);
    for field in ["Package: assumed", "Depends: libc6 (>= 2."] {
        assert!(info.contains(field), "no {field:?} in:\n{info}");
    }

    let root = dir.path().join("root");
    let extracted = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root)).await;
    assert!(
        extracted.status.success(),
        "{}",
        String::from_utf8_lossy(&extracted.stderr)
    );
    for path in EXPECTED {
        assert!(root.join(path).is_file(), "{path} is not in the package");
    }
    let version = run(Command::new(root.join("usr/bin/assumed")).arg("--version")).await;
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("assumed {}", env!("CARGO_PKG_VERSION"))
    );

    // The service runs the packaged binary. systemd-analyze checks that the
    // command exists, and it is not installed on this machine: verify the
    // same unit with the extracted binary's path in its place.
    let service =
        std::fs::read_to_string(root.join("usr/lib/systemd/user/assumed.service")).expect("unit");
    assert!(
        service
            .lines()
            .any(|l| l == "ExecStart=/usr/bin/assumed serve"),
        "{service}"
    );
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).expect("units dir");
    let packaged = root.join("usr/bin/assumed").display().to_string();
    std::fs::write(
        units.join("assumed.service"),
        service.replace(
            "ExecStart=/usr/bin/assumed",
            &format!("ExecStart={packaged}"),
        ),
    )
    .expect("unit");
    std::fs::copy(
        root.join("usr/lib/systemd/user/assumed.socket"),
        units.join("assumed.socket"),
    )
    .expect("socket");
    crate::harness::assert_units_verify(&units).await;
}
