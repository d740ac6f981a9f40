//! The documentation says what the code does: every metric the crates record is in the table
//! of `docs/embedding.md`, and the table names none that no code records.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names in `metrics::counter!("…"`, `gauge!` and `histogram!` calls of the crates'
/// sources (not their tests).
fn recorded() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["marie-core", "marie-llm", "marie-adapters", "marie-axum"] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for macro_call in ["counter!(", "gauge!(", "histogram!("] {
            for piece in text.split(macro_call).skip(1) {
                let piece = piece.trim_start();
                if let Some(rest) = piece.strip_prefix('"') {
                    let name = rest.split('"').next().unwrap();
                    if name.starts_with("marie_") {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// The names in the metrics table of `docs/embedding.md` (labels dropped).
fn documented() -> BTreeSet<String> {
    let docs = include_str!("../../docs/embedding.md");
    let section = docs.split("## Metrics").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|rest| rest.split(['`', '{']).next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let recorded = recorded();
    assert!(
        recorded.len() >= 10,
        "found the metrics in the code: {recorded:?}"
    );
    assert_eq!(documented(), recorded);
}

/// The `pub` fields of the struct `name` in `file` (relative to the workspace).
fn fields(file: &str, name: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let body = text
        .split(&format!("pub struct {name} {{"))
        .nth(1)
        .unwrap_or_else(|| panic!("no struct {name} in {file}"));
    let body = body.split("\n}").next().unwrap();
    body.lines()
        .filter_map(|line| line.trim().strip_prefix("pub "))
        .filter_map(|rest| rest.split(':').next())
        .map(str::to_owned)
        .collect()
}

/// Every setting of `MarieConfig` (and of the engine and delivery settings in it) has a row
/// in the configuration table of `docs/embedding.md`.
#[test]
fn every_setting_is_in_the_configuration_table() {
    let docs = include_str!("../../docs/embedding.md");
    let table = docs.split("## Configuration").nth(1).unwrap();
    let table = table.split("\n## ").next().unwrap();
    let mut settings = Vec::new();
    for field in fields("marie-axum/src/config.rs", "MarieConfig") {
        if field != "engine" && field != "delivery" {
            settings.push(field);
        }
    }
    for field in fields("marie-core/src/engine/config.rs", "EngineConfig") {
        settings.push(format!("engine.{field}"));
    }
    for field in fields("marie-axum/src/delivery/mod.rs", "DeliveryConfig") {
        settings.push(format!("delivery.{field}"));
    }
    assert!(settings.len() > 20, "{settings:?}");
    let missing: Vec<_> = settings
        .iter()
        .filter(|s| !table.contains(&format!("`{s}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/embedding.md's table: {missing:?}"
    );
}
