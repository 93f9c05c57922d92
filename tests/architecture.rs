//! The shape of the code (docs/architecture.md), checked from the source: no module imports one
//! that imports it back, at any folder level, and the kernels import nothing from the model.
//! Paths are read as written (`crate::a::b`, `super::c`), comments and test modules aside.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every `.rs` file under `src/` as its module path (`src/engine/train/run.rs` is
/// `engine::train::run`), with its source.
fn modules() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
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
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut module: Module = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            (module, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests` (at the end).
fn code(source: &str) -> String {
    let source = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(source);
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names: `crate::x::y...` and `super::x...` (resolved against `module`).
fn paths(module: &Module, code: &str) -> Vec<Module> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        for (i, _) in code.match_indices(start) {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[i + start.len()..];
            let mut parts: Module = Vec::new();
            for part in rest.split("::") {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name.is_empty() {
                    break;
                }
                let whole = name.len() == part.len();
                parts.push(name);
                if !whole {
                    break;
                }
            }
            let mut path = if start == "super::" {
                module[..module.len().saturating_sub(1)].to_vec()
            } else {
                Vec::new()
            };
            path.extend(parts);
            out.push(path);
        }
    }
    out
}

/// Edges between modules cut to their first `depth` parts (`engine::train` at 2), leaving out
/// a module and its own parent or child.
fn edges(depth: usize) -> BTreeSet<(Module, Module)> {
    let modules = modules();
    let known: BTreeSet<&Module> = modules.keys().collect();
    let mut edges = BTreeSet::new();
    for (module, source) in &modules {
        for path in paths(module, &code(source)) {
            // The longest prefix that is a module.
            let Some(target) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| known.contains(p))
            else {
                continue;
            };
            let (a, b) = (
                module[..module.len().min(depth)].to_vec(),
                target[..target.len().min(depth)].to_vec(),
            );
            let nested = a.starts_with(&b) || b.starts_with(&a);
            if a != b && !nested {
                edges.insert((a, b));
            }
        }
    }
    edges
}

/// A cycle in `edges`, if there is one (as the modules on it).
fn cycle(edges: &BTreeSet<(Module, Module)>) -> Option<Vec<Module>> {
    let mut next: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    fn visit<'a>(
        m: &'a Module,
        next: &BTreeMap<&'a Module, Vec<&'a Module>>,
        stack: &mut Vec<&'a Module>,
        done: &mut BTreeSet<&'a Module>,
    ) -> Option<Vec<Module>> {
        if let Some(i) = stack.iter().position(|s| *s == m) {
            return Some(stack[i..].iter().map(|m| (*m).clone()).collect());
        }
        if !done.insert(m) {
            return None;
        }
        stack.push(m);
        for n in next.get(m).into_iter().flatten() {
            if let Some(c) = visit(n, next, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in next.keys() {
        if let Some(c) = visit(m, &next, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for depth in 1..=5 {
        let cycle = cycle(&edges(depth)).map(|c| {
            c.iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(" -> ")
        });
        assert_eq!(cycle, None, "an import circle between folders {depth} deep");
    }
}

#[test]
fn the_kernels_import_nothing_from_the_model() {
    let kernels: Module = vec!["engine".into(), "kernels".into()];
    let from_kernels: Vec<_> = edges(99)
        .into_iter()
        .filter(|(a, b)| a.starts_with(&kernels) && b.first().is_some_and(|f| f == "engine"))
        .filter(|(_, b)| !b.starts_with(&kernels))
        .map(|(a, b)| format!("{} -> {}", a.join("::"), b.join("::")))
        .collect();
    assert_eq!(from_kernels, Vec::<String>::new());
}

#[test]
fn the_checker_sees_a_circle_and_the_imports_of_a_file() {
    // A check that cannot fail proves nothing: a made-up circle is found, and real imports are
    // read (the run imports the step; the step does not import the run).
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    let made_up: BTreeSet<_> = [(m("a"), m("b")), (m("b"), m("c")), (m("c"), m("a"))].into();
    assert_eq!(cycle(&made_up).map(|c| c.len()), Some(3));
    let all = edges(99);
    assert!(all.contains(&(m("engine::train::run"), m("engine::train::step"))));
    assert!(!all.contains(&(m("engine::train::step"), m("engine::train::run"))));
}
