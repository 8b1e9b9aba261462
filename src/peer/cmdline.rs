//! A process's arguments as one line for `status` and the client log, the
//! same on every system: Linux hands them over as `/proc/<pid>/cmdline`,
//! macOS as the argv part of `KERN_PROCARGS2` (`darwin.rs`), both
//! NUL-separated.

use super::CMDLINE_LIMIT;

/// NUL-separated arguments as one line, control characters made visible as
/// `?` (a log line must stay one line), cut at [`CMDLINE_LIMIT`] characters.
pub(super) fn command_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut line: String = text
        .trim_end_matches('\0')
        .chars()
        .map(|c| match c {
            '\0' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .take(CMDLINE_LIMIT + 1)
        .collect();
    if line.chars().count() > CMDLINE_LIMIT {
        line = line.chars().take(CMDLINE_LIMIT - 1).collect();
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_one_visible_line_cut_at_the_limit() {
        assert_eq!(
            command_line(b"python3\0-c\0print(1)\0"),
            "python3 -c print(1)"
        );
        assert_eq!(command_line(b"evil\nline\0"), "evil?line");
        let long = command_line("x".repeat(500).as_bytes());
        assert_eq!(long.chars().count(), CMDLINE_LIMIT);
        assert!(long.ends_with('…'));
    }
}
