//! Typed, position-aware access to one TOML table.
//!
//! Every getter records the key it was asked for, so `finish` can report the
//! keys nobody asked for as unknown: the list of known keys is the code itself.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Problems;

pub(super) type Span = Range<usize>;
pub(super) type Check<'c, T> = &'c dyn Fn(&T) -> Result<(), String>;
pub(super) type StringList = Spanned<Vec<Spanned<String>>>;

pub(super) struct TableReader<'a> {
    /// `None` for an absent table: it reads as empty.
    table: Option<&'a DeTable<'a>>,
    /// Dotted path of this table, empty for the document itself.
    path: String,
    asked: Vec<&'static str>,
    every_key_asked: bool,
    problems: &'a Problems,
}

impl<'a> TableReader<'a> {
    pub(super) fn new(
        table: Option<&'a DeTable<'a>>,
        path: String,
        problems: &'a Problems,
    ) -> Self {
        Self {
            table,
            path,
            asked: Vec::new(),
            every_key_asked: false,
            problems,
        }
    }

    pub(super) fn report(&self, span: Span, message: impl Into<String>) {
        self.problems.report(span, message);
    }

    /// Where a key is written, without counting it as asked for.
    pub(super) fn key_span(&self, key: &str) -> Option<Span> {
        self.table?.get_key_value(key).map(|(key, _)| key.span())
    }

    fn value(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'a>>> {
        self.asked.push(key);
        self.table?.get(key)
    }

    /// A value of the key's own shape: `extract` says what it means, `None`
    /// for anything `expected` does not describe.
    pub(super) fn typed<T>(
        &mut self,
        key: &'static str,
        expected: &str,
        extract: impl FnOnce(&'a DeValue<'a>) -> Option<T>,
    ) -> Option<Spanned<T>> {
        let value = self.value(key)?;
        let extracted = extract(value.get_ref());
        if extracted.is_none() {
            self.report(value.span(), type_error(key, expected, value.get_ref()));
        }
        extracted.map(|inner| Spanned::new(value.span(), inner))
    }

    pub(super) fn bool(&mut self, key: &'static str) -> Option<bool> {
        self.typed(key, "a boolean", DeValue::as_bool)
            .map(Spanned::into_inner)
    }

    pub(super) fn string(
        &mut self,
        key: &'static str,
        check: Check<str>,
    ) -> Option<Spanned<String>> {
        let text = self.typed(key, "a string", |value| value.as_str().map(str::to_owned))?;
        self.check(&text, check);
        Some(text)
    }

    /// A humantime duration such as "1h", "90m" or "3600s".
    pub(super) fn duration(
        &mut self,
        key: &'static str,
        check: Check<Duration>,
    ) -> Option<Spanned<Duration>> {
        let text = self.string(key, &|_| Ok(()))?;
        let parsed = self.parse(&text, |text| {
            humantime::parse_duration(text).map_err(|error| {
                format!("{key} \"{text}\" is not a duration ({error}); write e.g. \"1h\", \"90m\" or \"3600s\"")
            })
        })?;
        self.check(&parsed, check);
        Some(parsed)
    }

    pub(super) fn socket_addr(&mut self, key: &'static str) -> Option<Spanned<SocketAddr>> {
        let text = self.string(key, &|_| Ok(()))?;
        self.parse(&text, |text| parse_socket_addr(key, text))
    }

    pub(super) fn string_list(
        &mut self,
        key: &'static str,
        check: Check<str>,
    ) -> Option<StringList> {
        let array = self.typed(key, "an array of strings", DeValue::as_array)?;
        let mut strings = Vec::new();
        for (index, item) in array.get_ref().iter().enumerate() {
            match item.get_ref().as_str() {
                Some(text) => strings.push(Spanned::new(item.span(), text.to_owned())),
                None => self.report(
                    item.span(),
                    type_error(&format!("{key}[{index}]"), "a string", item.get_ref()),
                ),
            }
        }
        strings.iter().for_each(|text| self.check(text, check));
        Some(Spanned::new(array.span(), strings))
    }

    /// A list of user ids (`allow_uids`): whole numbers a uid can be
    /// (4294967295 is `(uid_t) -1`, which names nobody).
    pub(super) fn uid_list(&mut self, key: &'static str) -> Option<Spanned<Vec<u32>>> {
        let array = self.typed(key, "an array of user ids", DeValue::as_array)?;
        let mut uids = Vec::new();
        for (index, item) in array.get_ref().iter().enumerate() {
            let uid = item.get_ref().as_integer().and_then(|integer| {
                u32::from_str_radix(integer.as_str(), integer.radix())
                    .ok()
                    .filter(|&uid| uid != u32::MAX)
            });
            match uid {
                Some(uid) => uids.push(uid),
                None if item.get_ref().as_integer().is_some() => self.report(
                    item.span(),
                    format!("{key}[{index}] is not a user id (0 to 4294967294)"),
                ),
                None => self.report(
                    item.span(),
                    type_error(&format!("{key}[{index}]"), "a user id", item.get_ref()),
                ),
            }
        }
        Some(Spanned::new(array.span(), uids))
    }

    /// A non-empty list of addresses.
    pub(super) fn socket_addr_list(
        &mut self,
        key: &'static str,
    ) -> Option<Spanned<Vec<Spanned<SocketAddr>>>> {
        let list = self.string_list(key, &|_| Ok(()))?;
        let span = list.span();
        if list.get_ref().is_empty() {
            self.report(span, format!("{key} must name at least one address"));
            return None;
        }
        let addrs = list
            .into_inner()
            .into_iter()
            .filter_map(|text| self.parse(&text, |text| parse_socket_addr(key, text)));
        Some(Spanned::new(span, addrs.collect()))
    }

    /// A table of string values, e.g. `tags = { team = "core" }`.
    pub(super) fn string_map(
        &mut self,
        key: &'static str,
    ) -> Vec<(Spanned<String>, Spanned<String>)> {
        let Some(table) = self.typed(key, "a table of strings", DeValue::as_table) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for (name, value) in table.get_ref().iter() {
            let name = Spanned::new(name.span(), name.get_ref().to_string());
            match value.get_ref().as_str() {
                Some(text) => entries.push((name, Spanned::new(value.span(), text.to_owned()))),
                None => self.report(
                    value.span(),
                    type_error(
                        &format!("{key}.{}", name.get_ref()),
                        "a string",
                        value.get_ref(),
                    ),
                ),
            }
        }
        entries
    }

    /// A sub-table; an absent or mistyped one reads as empty.
    pub(super) fn table(&mut self, key: &'static str) -> TableReader<'a> {
        let table = self
            .typed(key, "a table", DeValue::as_table)
            .map(Spanned::into_inner);
        TableReader::new(table, self.child_path(key), self.problems)
    }

    /// Every entry as a sub-table, e.g. the roles under `[roles]`.
    pub(super) fn tables(&mut self) -> Vec<(Spanned<String>, TableReader<'a>)> {
        self.every_key_asked = true;
        let mut tables = Vec::new();
        for (name, value) in self.table.into_iter().flat_map(|table| table.iter()) {
            let path = self.child_path(name.get_ref());
            match value.get_ref().as_table() {
                Some(table) => tables.push((
                    Spanned::new(name.span(), name.get_ref().to_string()),
                    TableReader::new(Some(table), path, self.problems),
                )),
                None => self.report(
                    value.span(),
                    format!(
                        "{}; write it as [{path}]",
                        type_error(&path, "a table", value.get_ref())
                    ),
                ),
            }
        }
        tables
    }

    /// Reports every key that no getter asked for.
    pub(super) fn finish(self) {
        if self.every_key_asked {
            return;
        }
        let place = if self.path.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in [{}]", self.path)
        };
        for key in self.table.into_iter().flat_map(|table| table.keys()) {
            if !self.asked.contains(&key.get_ref().as_ref()) {
                let hint = closest(key.get_ref(), &self.asked)
                    .map(|known| format!("; did you mean \"{known}\"?"));
                self.report(
                    key.span(),
                    format!(
                        "unknown key \"{}\" {place}{}",
                        key.get_ref(),
                        hint.unwrap_or_default()
                    ),
                );
            }
        }
    }

    fn check<T: ?Sized>(&self, value: &Spanned<impl std::borrow::Borrow<T>>, check: Check<T>) {
        if let Err(message) = check(value.get_ref().borrow()) {
            self.report(value.span(), message);
        }
    }

    fn parse<T>(
        &self,
        text: &Spanned<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Spanned<T>> {
        match parse(text.get_ref()) {
            Ok(parsed) => Some(Spanned::new(text.span(), parsed)),
            Err(message) => {
                self.report(text.span(), message);
                None
            }
        }
    }

    fn child_path(&self, key: &str) -> String {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = if plain {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

fn parse_socket_addr(key: &str, text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("{key} \"{text}\" is not an address ip:port, e.g. 127.0.0.1:9911 or [::1]:9911")
    })
}

fn type_error(what: &str, expected: &str, found: &DeValue<'_>) -> String {
    let found = found.type_str();
    let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{what}: expected {expected}, found {article} {found}")
}

/// The known key a typo most likely meant, if any is close enough.
fn closest<'k>(typo: &str, known: &[&'k str]) -> Option<&'k str> {
    let scored = known
        .iter()
        .map(|candidate| (strsim::levenshtein(typo, candidate), *candidate));
    scored
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| candidate)
}
