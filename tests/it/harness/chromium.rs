//! Debian's real Chromium, headless, as the browser `assumed console` starts.
//!
//! `command()` is a wrapper named `chromium` (so assumed knows it for a
//! Chromium) that runs the real browser headless with the arguments it was
//! given (`--user-data-dir`, the URL): it loads the page, keeps its cookies in
//! the profile as a windowed Chromium would, prints the page and exits. Each
//! run leaves its arguments and page in a directory of its own, and a
//! `done` file last, which the test waits for.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::run_ok;

/// Time for one headless page load under a loaded CI machine.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

pub struct Chromium {
    dir: tempfile::TempDir,
    real: PathBuf,
}

/// One finished run of the wrapper.
pub struct Run {
    pub args: Vec<String>,
    /// The page Chromium ended on, as it rendered it.
    pub page: String,
    pub status: String,
}

impl Chromium {
    pub fn install() -> Chromium {
        let real = which::which("chromium")
            .expect("chromium is not installed (scripts/test installs it from Debian)");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("runs")).expect("runs dir");
        let chromium = Chromium { dir, real };
        let script = format!(
            "#!/bin/sh\n\
             run='{runs}'/$$\n\
             mkdir \"$run\"\n\
             printf '%s\\n' \"$@\" > \"$run/args\"\n\
             '{real}' {flags} \"$@\" > \"$run/page\" 2> \"$run/stderr\"\n\
             echo $? > \"$run/status\"\n\
             touch \"$run/done\"\n",
            runs = chromium.dir.path().join("runs").display(),
            real = chromium.real.display(),
            flags = Self::HEADLESS.join(" "),
        );
        let wrapper = chromium.command();
        std::fs::create_dir(wrapper.parent().expect("bin dir")).expect("bin dir");
        std::fs::write(&wrapper, script).expect("wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        chromium
    }

    /// Headless, loading one page and printing it; no sandbox, as tests run as root in CI.
    const HEADLESS: [&str; 4] = ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"];

    /// The browser to name in `[console] browser` or `--browser`.
    pub fn command(&self) -> PathBuf {
        self.dir.path().join("bin/chromium")
    }

    /// The first `n` runs, once they have all finished, in the order they started.
    pub async fn runs(&self, n: usize) -> Vec<Run> {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let mut done: Vec<(std::time::SystemTime, PathBuf)> =
                std::fs::read_dir(self.dir.path().join("runs"))
                    .expect("runs")
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|run| run.join("done").exists())
                    .map(|run| {
                        (
                            std::fs::metadata(run.join("args"))
                                .and_then(|m| m.modified())
                                .expect("args"),
                            run,
                        )
                    })
                    .collect();
            if done.len() >= n {
                done.sort();
                return done.iter().map(|(_, run)| read_run(run)).collect();
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} Chromium runs finished in {RUN_DEADLINE:?}",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens `url` in the profile `user_data_dir` (the real browser, not
    /// through the wrapper) and returns the page it renders.
    pub async fn visit(&self, user_data_dir: &Path, url: &str) -> String {
        let output = run_ok(
            tokio::process::Command::new(&self.real)
                .args(Self::HEADLESS)
                .arg(format!("--user-data-dir={}", user_data_dir.display()))
                .arg(url),
        )
        .await;
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn read_run(run: &Path) -> Run {
    let read = |name: &str| std::fs::read_to_string(run.join(name)).expect(name);
    Run {
        args: read("args").lines().map(str::to_owned).collect(),
        page: read("page"),
        status: read("status").trim().to_owned(),
    }
}
