//! The layers of `src/`, as `src/lib.rs` draws them, kept true: a module
//! may use only the layers below its own (and its own layer), never one
//! above. A `use crate::...` that points up fails here, naming the file.

use std::path::{Path, PathBuf};

/// Bottom to top. A module is in the layer of the first path segment
/// after `crate::`.
const LAYERS: &[(&str, &[&str])] = &[
    ("sys", &["sys"]),
    ("server", &["server"]),
    ("runtimes", &["coro", "async_rt"]),
    ("models", &["models"]),
    ("tools", &["tools"]),
];

fn layer_of_module(first_segment: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&first_segment))
}

/// The layer of a source file, from its path under `src/`.
fn layer_of_file(path: &Path) -> Option<usize> {
    let relative = path.strip_prefix("src").ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    layer_of_module(first.trim_end_matches(".rs"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a path after `crate::` names first: one for `a::b`, each
/// item's for a group `{a::b, c}` (on the same line).
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    match rest.strip_prefix('{') {
        Some(group) => group
            .split(',')
            .map(ident)
            .filter(|s| !s.is_empty())
            .collect(),
        None => vec![ident(rest)],
    }
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd");
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(own) = layer_of_file(file) else {
            continue; // lib.rs, main.rs: the crate root and the binary
        };
        checked += 1;
        let text = std::fs::read_to_string(file).expect("read");
        for (number, line) in text.lines().enumerate() {
            // Doc comments may point anywhere; code may not.
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                for segment in first_segments(rest) {
                    let Some(used) = layer_of_module(&segment) else {
                        continue;
                    };
                    if used > own {
                        upward.push(format!(
                            "{}:{}: {} uses {} ({})",
                            file.display(),
                            number + 1,
                            LAYERS[own].0,
                            LAYERS[used].0,
                            code.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} files found under src/");
    assert!(
        upward.is_empty(),
        "uses that point up:\n{}",
        upward.join("\n")
    );
}
