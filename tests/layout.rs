//! The shape of `src/`, checked: the rules of README's Development section
//! that the compiler does not enforce by itself.
//!
//! - The pure modules (token contract, identity decisions, routing,
//!   request-shape rules) import nothing from Pingora, so they can become a
//!   crate without it and are tested without sockets.
//! - No two modules depend on each other, directly or through others (a parent
//!   and the files of its own folder excepted: `impl Gateway` spread over
//!   `proxy/*.rs` is one type by design).
//! - No source file grows past 600 lines: past that it usually holds two ideas.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const PURE: [&str; 4] = ["token", "identity", "net", "routing"];
const MAX_LINES: usize = 600;

/// Every `.rs` file under `src/`: its module path (`config::validate`), its
/// code without comments, and its length in lines.
fn modules() -> BTreeMap<String, (String, usize)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).expect("under src/");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            // Comments are left out: a doc link names a module without depending on it.
            let text = std::fs::read_to_string(&path).expect("read source");
            let code: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .map(|line| format!("{line}\n"))
                .collect();
            (parts.join("::"), (code, text.lines().count()))
        })
        .collect()
}

/// `code` with every grouped `use` tree written out as one path per item
/// (`use super::{a::X, b};` → `use super::a::X; use super::b;`), so that a
/// scan for paths sees each module a grouped import names.
fn expand_use_trees(code: &str) -> String {
    fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        match tree.find('{') {
            Some(open) if tree.ends_with('}') => {
                let head = format!("{prefix}{}", &tree[..open]);
                let inner = &tree[open + 1..tree.len() - 1];
                let (mut depth, mut start) = (0, 0);
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            expand(&head, &inner[start..i], out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                expand(&head, &inner[start..], out);
            }
            _ if !tree.is_empty() => out.push(format!("{prefix}{tree}")),
            _ => {}
        }
    }
    let mut result = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let starts_item = at == 0 || rest[..at].ends_with(|c: char| c.is_whitespace() || c == ')');
        let Some(end) = rest[at..].find(';').map(|e| at + e) else {
            break;
        };
        if !starts_item {
            result.push_str(&rest[..at + 4]);
            rest = &rest[at + 4..];
            continue;
        }
        result.push_str(&rest[..at]);
        let mut paths = Vec::new();
        expand("", &rest[at + 4..end], &mut paths);
        for path in paths {
            result.push_str(&format!("use {path}; "));
        }
        rest = &rest[end + 1..];
    }
    result.push_str(rest);
    result
}

/// Module paths named in `text` (code without comments) after `crate::` or `super::`, resolved
/// against `module` and cut to the longest module that exists.
fn references(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent(module))] {
        for (at, _) in text.match_indices(prefix) {
            let preceded_by_path = text[..at].ends_with("::");
            if preceded_by_path {
                continue;
            }
            let rest = &text[at + prefix.len()..];
            let mut path = base.clone();
            let mut best = None;
            for segment in rest.split("::") {
                let name: String = segment
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.is_empty() {
                    break;
                }
                path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}::{name}")
                };
                if known.contains(&path) {
                    best = Some(path.clone());
                }
                if name.len() != segment.len() {
                    break;
                }
            }
            if let Some(target) = best {
                found.insert(target);
            }
        }
    }
    found
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

fn is_ancestor(ancestor: &str, of: &str) -> bool {
    ancestor.is_empty() || of == ancestor || of.starts_with(&format!("{ancestor}::"))
}

#[test]
fn grouped_imports_are_written_out() {
    assert_eq!(
        expand_use_trees("use super::{jwks::JwksKeys, x::{A, b::C}};\nfn f() {}"),
        "use super::jwks::JwksKeys; use super::x::A; use super::x::b::C; \nfn f() {}"
    );
    assert_eq!(expand_use_trees("pub use a::B;"), "pub use a::B; ");
}

#[test]
fn pure_modules_import_nothing_from_pingora() {
    let mut offenders = Vec::new();
    for (module, (code, _)) in modules() {
        let top = module.split("::").next().unwrap_or_default();
        if PURE.contains(&top) && code.contains("pingora") {
            offenders.push(module);
        }
    }
    assert!(
        offenders.is_empty(),
        "pure modules mention pingora: {offenders:?}"
    );
}

#[test]
fn no_two_modules_depend_on_each_other() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, (code, _)) in &modules {
        for target in references(module, &expand_use_trees(code), &known) {
            if !is_ancestor(&target, module) && !is_ancestor(module, &target) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        edges.get("proxy").is_some_and(|e| e.contains("token")),
        "the scan finds imports: {edges:?}"
    );
    // Reachability between folders, not files: `a::x` using `b::y` is an edge a → b
    // at every level where the two paths part.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &edges {
        for to in targets {
            let (a, b): (Vec<&str>, Vec<&str>) =
                (from.split("::").collect(), to.split("::").collect());
            let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let key = |parts: &[&str]| parts[..=common.min(parts.len() - 1)].join("::");
            graph.entry(key(&a)).or_default().insert(key(&b));
        }
    }
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(next) = stack.pop() {
            assert_ne!(next, start, "{start} depends on itself through {seen:?}");
            if seen.insert(next.clone()) {
                stack.extend(graph.get(next).into_iter().flatten());
            }
        }
    }
}

#[test]
fn no_source_file_is_past_the_size_that_holds_one_idea() {
    let long: Vec<(String, usize)> = modules()
        .into_iter()
        .map(|(module, (_, lines))| (module, lines))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
