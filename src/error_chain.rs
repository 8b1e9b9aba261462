//! An error and its causes as a person reads them: each cause's `Display`,
//! joined with `": "`, without the generic wrappers the AWS SDK and hyper add
//! ("dispatch failure", "io error") and never a `Debug` rendering. The SDK's
//! own `DisplayErrorContext` appends the whole error's `Debug` dump, which
//! belongs in a debug log line only.

use std::error::Error;

/// Wrapper texts that say nothing a person can act on when a cause follows.
const GENERIC: [&str; 8] = [
    "dispatch failure",
    "io error",
    "other",
    "unhandled error",
    "service error",
    "response error",
    "an error occurred while loading credentials",
    "unexpected credentials error",
];

/// `error`, then each cause after it. After an `io::Error` the next is its
/// payload (`io::Error::get_ref`), which `source()` skips.
pub fn causes<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|payload| payload as &(dyn Error + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

/// The readable text of `error` and its causes (see the module doc).
pub fn readable(error: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes(error) {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || GENERIC.contains(&text) {
            continue;
        }
        // An io::Error shows its payload's text, and some wrappers repeat
        // their cause's: say it once.
        if parts.last().is_some_and(|last| last.ends_with(text)) {
            continue;
        }
        parts.push(text.to_owned());
    }
    match parts.is_empty() {
        true => error.to_string(),
        false => parts.join(": "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn Error + Send + Sync>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn wrappers_fall_away_and_io_payloads_are_followed_once() {
        let io = std::io::Error::other(Layer(
            "failed to lookup address information: Name or service not known",
            None,
        ));
        let error = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "io error",
                Some(Box::new(Layer("dns error", Some(Box::new(io))))),
            ))),
        );
        assert_eq!(
            readable(&error),
            "dns error: failed to lookup address information: Name or service not known"
        );
        assert_eq!(causes(&error).count(), 5, "the io payload is a cause too");
        assert_eq!(readable(&Layer("other", None)), "other");
    }
}
