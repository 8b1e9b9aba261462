//! Reading an access key pair from the person: asked on the terminal
//! without echo, or two lines of standard input (`--stdin`, for scripts and
//! password managers' CLIs). Never from argv or the environment, where other
//! processes and shell history would see them.

use std::io::{BufRead, IsTerminal};

use zeroize::Zeroizing;

/// An access key id and its secret as typed, checked for shape only.
pub struct KeyPair {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
}

/// Reads the pair from `--stdin`'s two lines, else from the terminal.
pub fn read_pair(from_stdin: bool) -> Result<KeyPair, String> {
    let (id, secret) = if from_stdin {
        two_lines(&mut std::io::stdin().lock())?
    } else {
        ask()?
    };
    checked(id.trim(), secret)
}

fn ask() -> Result<(Zeroizing<String>, Zeroizing<String>), String> {
    if !std::io::stdin().is_terminal() {
        return Err(
            "no terminal to ask for the keys on: pipe them in as two lines \
                    (access key id, then secret) with --stdin"
                .into(),
        );
    }
    let prompt = |what: &str| {
        rpassword::prompt_password(what)
            .map(Zeroizing::new)
            .map_err(|e| format!("cannot read from the terminal: {e}"))
    };
    let id = prompt("Access key id (not echoed): ")?;
    let secret = prompt("Secret access key (not echoed): ")?;
    Ok((id, secret))
}

/// The first two lines of `input`: the key id, then the secret.
fn two_lines(input: &mut dyn BufRead) -> Result<(Zeroizing<String>, Zeroizing<String>), String> {
    let mut line = || -> Result<Zeroizing<String>, String> {
        let mut text = Zeroizing::new(String::new());
        input
            .read_line(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(text)
    };
    let id = line()?;
    let secret = line()?;
    if id.trim().is_empty() || secret.trim().is_empty() {
        return Err(
            "--stdin takes two lines: the access key id, then the secret access key".into(),
        );
    }
    Ok((id, secret))
}

/// The pair if it has the shape of an IAM user's long-term key. Errors
/// quote the key id at most, never the secret.
fn checked(id: &str, secret: Zeroizing<String>) -> Result<KeyPair, String> {
    let secret = Zeroizing::new(secret.trim().to_owned());
    if !(16..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "{:?} is not an access key id (16 to 128 letters and digits, e.g. AKIA…)",
            shown(id)
        ));
    }
    if id.starts_with("ASIA") {
        return Err(
            "that key id (ASIA…) is a temporary session's, which expires and needs \
                    its session token; store an IAM user's long-term key (AKIA…)"
                .into(),
        );
    }
    if secret.chars().any(char::is_whitespace) || secret.len() < 16 {
        return Err(
            "that is not a secret access key (at least 16 characters, no spaces); \
                    nothing was stored"
                .into(),
        );
    }
    Ok(KeyPair {
        access_key_id: id.to_owned(),
        secret_access_key: secret,
    })
}

/// At most 24 characters of something typed where a key id was expected
/// (a secret pasted on the wrong line must not be printed whole).
fn shown(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(4).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn two_lines_with_crlf_and_spaces() {
        let mut input = format!(" AKIAIOSFODNN7EXAMPLE \r\n{SECRET}\r\n").into_bytes();
        let (id, secret) = two_lines(&mut input.as_slice()).expect("two lines");
        let pair = checked(id.trim(), secret).expect("a key pair");
        assert_eq!(pair.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(pair.secret_access_key.as_str(), SECRET);
        input.clear();
    }

    #[test]
    fn one_line_is_not_enough() {
        let error = two_lines(&mut "AKIAIOSFODNN7EXAMPLE\n".as_bytes()).err();
        assert!(error.expect("an error").contains("two lines"));
    }

    #[test]
    fn a_secret_on_the_key_id_line_is_not_printed() {
        let error = checked(SECRET, Zeroizing::new(SECRET.into()))
            .err()
            .expect("an error");
        assert!(!error.contains("XUtn"), "{error}");
    }

    #[test]
    fn session_keys_are_refused() {
        let error = checked("ASIAIOSFODNN7EXAMPLE", Zeroizing::new(SECRET.into()))
            .err()
            .expect("an error");
        assert!(error.contains("long-term"), "{error}");
    }
}
