//! Repository hygiene that a review would otherwise repeat: module docs, the
//! architecture map, test hygiene, and the boundaries between layers.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn every_source_module_opens_with_a_doc_line() {
    let mut missing = Vec::new();
    for crate_dir in ["hub/src", "agentd/src", "protocol/src"] {
        for file in rust_files(&root().join(crate_dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(file.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a `//!` first line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn architecture_md_maps_every_hub_module() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("hub/src")).unwrap().flatten() {
        if entry.path().is_dir() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !map.contains(&format!("### `hub/src/{name}`")) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md has no `### `hub/src/<dir>`` heading for: {missing:?}"
    );
}

#[test]
fn tests_are_never_switched_off() {
    let mut offenders = Vec::new();
    for dir in ["hub", "agentd", "protocol"] {
        for file in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for marker in ["#[ignore", "#[should_panic"] {
                // This file names the markers; it does not use them.
                if text.contains(marker) && !file.ends_with("tidy.rs") {
                    offenders.push(format!("{} uses {marker}", file.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn layers_keep_their_boundaries() {
    let hub = root().join("hub/src");
    let mut offenders = Vec::new();
    for domain in [
        "tasks",
        "agents",
        "approvals",
        "events",
        "files",
        "accounts",
    ] {
        for file in rust_files(&hub.join(domain)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("use axum") || text.contains("crate::api") {
                offenders.push(format!(
                    "{} (a domain module) uses the HTTP layer",
                    file.display()
                ));
            }
        }
    }
    for file in rust_files(&hub.join("api"))
        .into_iter()
        .chain(rust_files(&hub.join("web")))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("diesel::") || text.contains("schema::") {
            offenders.push(format!(
                "{} (a handler) queries the database directly",
                file.display()
            ));
        }
    }
    for file in rust_files(&hub) {
        let text = std::fs::read_to_string(&file).unwrap();
        if !file.starts_with(hub.join("store"))
            && (text.contains("PgConnection") || text.contains("SqliteConnection"))
        {
            offenders.push(format!(
                "{} names a connection type outside store/",
                file.display()
            ));
        }
    }
    let protocol_manifest = std::fs::read_to_string(root().join("protocol/Cargo.toml")).unwrap();
    for io_crate in ["tokio", "axum", "diesel", "tungstenite"] {
        if protocol_manifest.contains(io_crate) {
            offenders.push(format!("protocol/Cargo.toml depends on {io_crate}"));
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
