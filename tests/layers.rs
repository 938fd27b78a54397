//! The source's rooms import only downwards, as lib.rs and the README's
//! Layout say: a module of one room uses those of the rooms before it (or
//! of its own), and no module imports one that imports it back.

// Tests and benchmarks may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The rooms, lowest first. The ground is the top-level files every room
/// may use.
const ROOMS: &[&str] = &["ground", "language", "qmp", "qemu", "ui", "vm", "shell", "cli", "app"];

/// The rooms that are folders of modules, each module a unit of its own.
const FOLDERS: &[&str] = &["language", "qemu", "ui", "shell"];

fn room(unit: &str) -> &str {
    let first = unit.split("::").next().unwrap();
    match first {
        "language" | "qmp" | "qemu" | "ui" | "vm" | "shell" | "cli" | "app" => first,
        _ => "ground",
    }
}

/// The unit a path inside the crate names: `language::bind`, `qmp`, `error`.
fn unit(path: &[&str]) -> String {
    match path {
        [folder, module, ..] if FOLDERS.contains(folder) => format!("{folder}::{module}"),
        [first, ..] => (*first).to_string(),
        [] => String::new(),
    }
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// What each unit imports (`crate::...` in its code, not in comments or
/// its unit tests).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().with_extension("");
        let parts: Vec<&str> = relative.iter().map(|p| p.to_str().unwrap()).collect();
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let from = unit(&parts);
        let text = fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let path: Vec<&str> = rest
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap()
                    .split("::")
                    .filter(|p| !p.is_empty() && p.starts_with(|c: char| c.is_ascii_lowercase()))
                    .collect();
                let to = unit(&path);
                if !to.is_empty() && to != from {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    graph
}

#[test]
fn every_room_imports_only_the_rooms_before_it() {
    let rank = |unit: &str| ROOMS.iter().position(|r| *r == room(unit)).unwrap();
    let upward: Vec<String> = imports()
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from, to)))
        .filter(|(from, to)| rank(to) > rank(from))
        .map(|(from, to)| format!("{from} ({}) imports {to} ({})", room(from), room(to)))
        .collect();
    assert!(upward.is_empty(), "imports up the rooms {ROOMS:?}:\n{}", upward.join("\n"));
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    // Depth first; a unit met again while still on the path closes a circle.
    fn visit(
        unit: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|u| u == unit) {
            let mut circle = path[at..].to_vec();
            circle.push(unit.to_string());
            return Some(circle);
        }
        if !done.insert(unit.to_string()) {
            return None;
        }
        path.push(unit.to_string());
        for next in graph.get(unit).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for unit in graph.keys() {
        if let Some(circle) = visit(unit, &graph, &mut Vec::new(), &mut done) {
            panic!("an import circle: {}", circle.join(" -> "));
        }
    }
    // The walk saw the modules it is meant to: a broken walk proves nothing.
    assert!(graph.contains_key("shell::session") && graph.contains_key("language::bind"), "{graph:?}");
}
