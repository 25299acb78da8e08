//! The book, the lab sheets and the README keep to the code:
//!
//! - every `lab` command they show parses with the binary's own parser
//!   (`iolab::cli::command`), subcommands and flags alike;
//! - every project source item they name as a path (`driver::Driver::service`,
//!   `src/driver.rs`) exists;
//! - every relative link in the book leads somewhere;
//! - every model chapter links to its annotated source page, and the pages
//!   committed under `docs/src/annotated/` are what `lab annotate` makes now.

mod util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file below `dir`, at any depth.
fn files_under(dir: PathBuf) -> Vec<PathBuf> {
    let (mut files, mut dirs) = (Vec::new(), vec![dir]);
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// README.md, docs/src/**/*.md and labs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs/src", "labs"] {
        files.extend(
            files_under(root().join(dir))
                .into_iter()
                .filter(|path| path.extension().is_some_and(|e| e == "md")),
        );
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The inline code spans of a Markdown text (outside fenced blocks).
fn code_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut in_fence = false;
    // Spans may wrap across lines within a paragraph: join each paragraph.
    let mut paragraph = String::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if line.trim().is_empty() {
            let mut parts = paragraph.split('`');
            parts.next();
            while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
                spans.push(code.to_string());
            }
            paragraph.clear();
        } else {
            paragraph.push_str(line);
            paragraph.push(' ');
        }
    }
    spans
}

/// The command lines of a Markdown text's fenced code blocks: every line
/// of a `sh` (or unmarked) block, the `$ ` lines of a `console` block, none
/// of a `text` or `rust` block (output, diagrams, code).
fn fenced_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                None => Some(info.trim().to_string()),
                Some(_) => None,
            };
            continue;
        }
        match fence.as_deref() {
            Some("console") if trimmed.starts_with("$ ") => lines.push(trimmed.to_string()),
            // The status line a server prints is output, not a command.
            Some("" | "sh" | "bash" | "shell") if !trimmed.starts_with("[lab]") => {
                lines.push(line.to_string())
            }
            _ => {}
        }
    }
    lines
}

/// The `lab` invocations in one line of shell: the arguments after each
/// `lab` (or `.../lab`, or `cargo run ... --bin lab --`), up to the next
/// shell operator. Placeholders become values of the right shape.
fn lab_commands(line: &str) -> Vec<Vec<String>> {
    let line = line.trim().trim_start_matches("$ ");
    let line = match line.find(" #") {
        Some(comment) => &line[..comment],
        None => line,
    };
    let line = line.replace(['[', ']'], " ").replace('…', " ");
    let words = shell_words::split(&line)
        .unwrap_or_else(|_| line.split_whitespace().map(String::from).collect());
    let mut commands = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let is_lab = (word == "lab" || word.ends_with("/lab"))
            && !(i > 0 && (words[i - 1] == "--bin" || words[i - 1] == "-o"));
        let is_cargo_lab = word == "lab" && i > 0 && words[i - 1] == "--bin";
        if !(is_lab || is_cargo_lab) {
            i += 1;
            continue;
        }
        i += 1;
        if is_cargo_lab {
            if words.get(i).map(String::as_str) != Some("--") {
                continue;
            }
            i += 1;
        }
        let mut args = Vec::new();
        while i < words.len() && !is_shell_operator(&words[i]) {
            args.push(placeholder(&words[i], args.is_empty()));
            i += 1;
        }
        args.retain(|a| a != "OPTIONS" && a != "...");
        commands.push(args);
    }
    commands
}

fn is_shell_operator(word: &str) -> bool {
    matches!(word, "|" | "||" | "&" | "&&" | ";" | ")" | "2>&1" | "<")
        || word.starts_with('>')
        || word.starts_with("2>")
        || word.ends_with(';')
}

/// `MODEL` or `$model` where a subcommand goes is `epoll`; any other
/// UPPERCASE word or shell variable is a number.
fn placeholder(word: &str, first: bool) -> String {
    let is_var = word.starts_with('$');
    let is_upper = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || "_:".contains(c) || c.is_ascii_digit())
        && word != "OPTIONS";
    match (is_var || is_upper, first) {
        (true, true) => "epoll".into(),
        (true, false) => "1".into(),
        _ => word.trim_end_matches(';').into(),
    }
}

#[test]
fn every_lab_command_in_the_docs_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let spans = code_spans(&text)
            .into_iter()
            .filter(|s| s.trim_start().starts_with("lab ") || s.trim() == "lab");
        for line in spans.chain(fenced_lines(&text)) {
            for args in lab_commands(&line) {
                if args.is_empty() {
                    continue; // `lab` alone, as a name
                }
                checked += 1;
                let argv = std::iter::once("lab".to_string()).chain(args.iter().cloned());
                if let Err(e) = iolab::cli::command().try_get_matches_from(argv) {
                    use clap::error::ErrorKind::*;
                    if !matches!(e.kind(), DisplayHelp | DisplayVersion) {
                        let why = e.render().to_string();
                        let why = why.lines().next().unwrap_or_default().to_string();
                        failures.push(format!("{}: `{}`: {why}", relative(&file), line.trim()));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The extractor itself must be finding the commands.
    assert!(checked > 100, "only {checked} lab commands found");
}

#[test]
fn the_command_extractor_reads_shell_lines() {
    assert_eq!(
        lab_commands("taskset -c 0 lab epoll --edge & SERVER=$!; sleep 0.5"),
        vec![vec!["epoll", "--edge"]]
    );
    assert_eq!(
        lab_commands("$ printf 'hi\\n' | lab client 127.0.0.1:7878 # one line"),
        vec![vec!["client", "127.0.0.1:7878"]]
    );
    assert_eq!(
        lab_commands("cargo run --release --bin lab -- epoll"),
        vec![vec!["epoll"]]
    );
    assert_eq!(
        lab_commands("lab demo edge-vs-level --model 'epoll --edge'"),
        vec![vec!["demo", "edge-vs-level", "--model", "epoll --edge"]]
    );
    assert_eq!(
        lab_commands("lab MODEL [--addr HOST:PORT] [OPTIONS]"),
        vec![vec!["epoll", "--addr", "1"]]
    );
    assert!(iolab::cli::command()
        .try_get_matches_from(["lab", "epoll", "--no-such-flag"])
        .is_err());
    assert!(iolab::cli::command()
        .try_get_matches_from(["lab", "epoll", "--sqpoll"])
        .is_err());
}

/// Every identifier the project's source defines: functions, types,
/// traits, modules, constants, statics, enum variants and fields.
fn defined_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let src = root().join("src");
    for path in files_under(src.clone()) {
        // The module a file is in (its folder, below src/), and the file's own.
        let folder = path.parent().unwrap();
        if folder != src {
            let name = folder.file_name().unwrap();
            names.insert(name.to_string_lossy().into_owned());
        }
        names.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let words: Vec<&str> = line
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '!'))
                .filter(|w| !w.is_empty())
                .collect();
            for pair in words.windows(2) {
                if matches!(
                    pair[0],
                    "fn" | "struct"
                        | "enum"
                        | "trait"
                        | "mod"
                        | "const"
                        | "static"
                        | "type"
                        | "macro_rules!"
                ) {
                    names.insert(pair[1].to_string());
                }
            }
            // Variants and fields: `Name,` `Name(` `Name {` `name:` at
            // the start of a line.
            let trimmed = line.trim_start().trim_start_matches("pub ");
            let ident: String = trimmed
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = trimmed[ident.len()..].trim_start();
            if !ident.is_empty()
                && (after.starts_with(',')
                    || after.starts_with('(')
                    || after.starts_with('{')
                    || (after.starts_with(':') && !after.starts_with("::")))
            {
                names.insert(ident);
            }
        }
    }
    names
}

/// Crates and types that are not the project's: paths into them are not
/// checked.
const FOREIGN: &[&str] = &[
    "std",
    "core",
    "alloc",
    "libc",
    "nix",
    "mio",
    "polling",
    "tokio",
    "io_uring",
    "socket2",
    "clap",
    "serde",
    "serde_json",
    "criterion",
    "hdrhistogram",
    "corosensei",
    "may",
    "u8",
    "u16",
    "u32",
    "u64",
    "usize",
    "i32",
    "i64",
    "f64",
    "Vec",
    "Option",
    "Result",
    "String",
    "Box",
    "Rc",
    "Arc",
    "Mutex",
    "RefCell",
    "Cell",
    "Duration",
    "Instant",
    "TcpStream",
    "TcpListener",
    "io",
    "thread",
    "mem",
    "ptr",
    "fmt",
    "Ordering",
    "AtomicBool",
    "AtomicU64",
    "Self",
    "ErrorKind",
    "mpsc",
    "opcode",
    "cqueue",
    "squeue",
    "types",
];

#[test]
fn every_source_item_the_docs_name_exists() {
    let defined = defined_names();
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for span in code_spans(&text) {
            let span = span.trim();
            // File paths in the repository.
            if ["src/", "tests/", "benches/", "docs/", "labs/", ".ci/"]
                .iter()
                .any(|p| span.starts_with(p))
                && !span.contains(' ')
            {
                checked += 1;
                let path = span.split(':').next().unwrap().trim_end_matches('/');
                if !root().join(path).exists() {
                    missing.push(format!("{}: no file `{span}`", relative(&file)));
                }
                continue;
            }
            // Paths like `driver::Driver::service` or `Epoll::new()`.
            let path = span.trim_end_matches("()");
            let is_path = path.contains("::")
                && path
                    .split("::")
                    .all(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if !is_path {
                continue;
            }
            let mut segments: Vec<&str> = path.split("::").collect();
            if segments[0] == "crate" || segments[0] == "iolab" {
                segments.remove(0);
            }
            if segments.is_empty() || FOREIGN.contains(&segments[0]) {
                continue;
            }
            checked += 1;
            for segment in segments {
                if !defined.contains(segment) {
                    missing.push(format!(
                        "{}: `{span}`: nothing named `{segment}` in src/",
                        relative(&file)
                    ));
                    break;
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    assert!(checked > 50, "only {checked} source items found");
}

#[test]
fn every_relative_link_in_the_book_leads_somewhere() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let Some(end) = target.find(')') else {
                continue;
            };
            let target = target[..end].split('#').next().unwrap().trim();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let path = dir.join(target);
            // mdBook turns chapter.md into chapter.html.
            let as_markdown = path.with_extension("md");
            let found = path.exists() || (target.ends_with(".html") && as_markdown.exists());
            if !found {
                broken.push(format!("{}: ({target})", relative(&file)));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn every_model_chapter_links_its_annotated_source() {
    for model in iolab::models::all() {
        let chapter = root().join(format!("docs/src/models/{}.md", model.name));
        let text = std::fs::read_to_string(&chapter)
            .unwrap_or_else(|e| panic!("{}: {e}", chapter.display()));
        let link = format!("../annotated/{}.html", model.name);
        assert!(
            text.contains(&link),
            "{} does not link {link}",
            chapter.display()
        );
    }
}

#[test]
fn the_committed_annotated_pages_are_current() {
    let fresh = std::env::temp_dir().join(format!("iolab-annotate-{}", std::process::id()));
    let done = util::run_lab(&["annotate", "--out", fresh.to_str().unwrap()]);
    assert!(done.status.success(), "{}", done.stderr);
    let committed = root().join("docs/src/annotated");
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&fresh).unwrap().flatten() {
        let name = entry.file_name();
        let new = std::fs::read(entry.path()).unwrap();
        let old = std::fs::read(committed.join(&name)).unwrap_or_default();
        if new != old {
            stale.push(name.to_string_lossy().into_owned());
        }
    }
    let _ = std::fs::remove_dir_all(&fresh);
    assert!(
        stale.is_empty(),
        "docs/src/annotated is stale ({}): run `cargo run --release --bin lab -- annotate \
         --out docs/src/annotated`",
        stale.join(", ")
    );
}
