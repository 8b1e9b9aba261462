//! The module layering of ARCHITECTURE.md, checked against the source: no
//! import cycle between the top-level modules or between the files of one
//! directory module, and no layer importing what it may not.
//!
//! It reads `src/` as text (`crate::…` and `super::…` paths outside test
//! code), which is all `use` can name; a path in a string or a comment would
//! count too, so keep such mentions out of code that is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of ARCHITECTURE.md, top to bottom: each names its modules and
/// the layers it may import. `server` and `sts` sit side by side and may not
/// import each other: the server asks the cache, and the cache's `Fetcher`
/// port is how STS gets in.
const LAYERS: &[(&str, &[&str], &[&str])] = &[
    (
        "commands",
        &[
            "cli",
            "doctor",
            "console",
            "install",
            "init",
            "completions",
            "healthcheck",
            "compose",
            "client_env",
            "aws_files",
            "daemon_client",
            "local_client",
            "keys_cmd",
            "approval_cmd",
        ],
        &["commands", "daemon", "server", "sts", "cache", "base"],
    ),
    (
        "daemon",
        &[
            "daemon",
            "service",
            "logging",
            "address_file",
            "own_address",
        ],
        &["daemon", "server", "sts", "cache", "base"],
    ),
    (
        "server",
        &["server", "clients", "approval", "peer", "memory"],
        &["server", "cache", "base"],
    ),
    (
        "sts",
        &["sts", "attention", "profiles"],
        &["sts", "cache", "base"],
    ),
    ("cache", &["cache"], &["cache", "base"]),
    (
        "base",
        &[
            "config",
            "credentials",
            "arn",
            "token",
            "subnet",
            "notify",
            "error_chain",
            "keys",
        ],
        &["base"],
    ),
];

#[test]
fn top_level_modules_import_one_way() {
    let graph = module_graph();
    let top = collapse(&graph, |module| {
        module.split("::").next().unwrap_or(module).to_owned()
    });
    assert_eq!(
        cycles(&top),
        Vec::<Vec<String>>::new(),
        "import cycles between top-level modules"
    );
}

#[test]
fn the_files_of_a_directory_module_import_one_way() {
    // Siblings only (`server::warm` → `server::listener`): a file using its
    // own `mod.rs` is Rust's ordinary nesting, not a circle.
    let graph = module_graph();
    let mut siblings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph.iter().filter(|(from, _)| from.contains("::")) {
        let directory = from.split("::").next().unwrap_or_default();
        let same_directory = tos
            .iter()
            .filter(|to| to.split("::").next() == Some(directory) && to.contains("::"));
        siblings
            .entry(from.clone())
            .or_default()
            .extend(same_directory.filter(|to| *to != from).cloned());
    }
    assert_eq!(
        cycles(&siblings),
        Vec::<Vec<String>>::new(),
        "import cycles between the files of a directory module"
    );
}

#[test]
fn no_layer_imports_what_it_may_not() {
    let graph = module_graph();
    let top = collapse(&graph, |module| {
        module.split("::").next().unwrap_or(module).to_owned()
    });
    let layer_of = |module: &str| {
        LAYERS
            .iter()
            .find(|(_, modules, _)| modules.contains(&module))
            .map(|(layer, _, may)| (*layer, *may))
    };
    let mut breaches = Vec::new();
    for (module, imports) in &top {
        let Some((layer, may)) = layer_of(module) else {
            breaches.push(format!(
                "{module} is in no layer: place it in LAYERS and ARCHITECTURE.md"
            ));
            continue;
        };
        for import in imports {
            match layer_of(import) {
                Some((theirs, _)) if !may.contains(&theirs) => {
                    breaches.push(format!("{module} ({layer}) imports {import} ({theirs})"))
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        breaches,
        Vec::<String>::new(),
        "see ARCHITECTURE.md, \"Layers\""
    );
    // A renamed module must not turn a rule into a no-op.
    for (_, modules, _) in LAYERS {
        for module in *modules {
            assert!(
                top.contains_key(*module),
                "LAYERS names `{module}`, which is not a module under src/"
            );
        }
    }
}

/// Every non-test file under `src/` with the modules it imports
/// (`server::admin` → {`cache`, `server::error`, …}).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: BTreeMap<String, PathBuf> = rust_files(&src)
        .into_iter()
        .map(|file| (module_name(&src, &file), file))
        .filter(|(module, _)| {
            module.rsplit("::").next() != Some("tests") && module != "main" && module != "crate"
        })
        .collect();
    let known: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        graph.insert(
            module.clone(),
            imports(module, without_tests(&text), &known),
        );
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// `src/server/mod.rs` → `server`, `src/server/admin.rs` → `server::admin`.
fn module_name(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    if parts.is_empty() {
        "crate".to_owned()
    } else {
        parts.join("::")
    }
}

/// The text before the file's `#[cfg(test)]` module, which by convention here
/// is the last item of a file.
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ")
        .map_or(text, |at| &text[..at])
}

/// The modules a file names through `crate::` and `super::` paths,
/// including grouped ones (`use crate::{cache, sts::Sts};`): each path goes
/// to the longest module it starts with.
fn imports(module: &str, text: &str, known: &BTreeSet<&str>) -> BTreeSet<String> {
    let parent = module.rsplit_once("::").map(|(parent, _)| parent);
    let mut found = BTreeSet::new();
    for (prefix, base) in [("crate::", None), ("super::", parent)] {
        if prefix == "super::" && base.is_none() {
            continue;
        }
        for (at, _) in text.match_indices(prefix) {
            if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &text[at + prefix.len()..];
            let paths: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .collect(),
                None => vec![rest],
            };
            for path in paths {
                let mut candidate: Vec<&str> =
                    base.map(|b| b.split("::").collect()).unwrap_or_default();
                let mut longest = None;
                for segment in path.split("::").take(3) {
                    let name = segment
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or_default();
                    candidate.push(name);
                    let joined = candidate.join("::");
                    if known.contains(joined.as_str()) {
                        longest = Some(joined);
                    }
                }
                found.extend(
                    longest
                        .or(base.map(str::to_owned))
                        .filter(|target| target != module),
                );
            }
        }
    }
    found
}

fn collapse(
    graph: &BTreeMap<String, BTreeSet<String>>,
    to: impl Fn(&str) -> String,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut collapsed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph {
        let from = to(from);
        let entry = collapsed.entry(from.clone()).or_default();
        entry.extend(tos.iter().map(|t| to(t)).filter(|t| *t != from));
    }
    collapsed
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let order = self.index.len();
            self.index.insert(node, order);
            self.low.insert(node, order);
            self.stack.push(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[next].min(self.low[node]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.index[next].min(self.low[node]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let at = self.stack.iter().rposition(|n| *n == node).unwrap_or(0);
                let component: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}
