//! The book, the lab sheets and the README keep to the code:
//!
//! - every `lab` command they show parses with the binary's own parser
//!   (`iolab::tools::cli::command`), subcommands and flags alike;
//! - every project source item they name exists: paths
//!   (`driver::Driver::service`, `src/server/driver.rs`) item by item, and bare
//!   names that look like ours (`move_unsent_into`, `ConnPermit`,
//!   `MAX_CONNS`) somewhere in the source; every `--flag` is one of `lab`'s;
//! - every relative link in the book leads somewhere;
//! - every model chapter links to its annotated source page, and the pages
//!   committed under `docs/src/annotated/` are what `lab annotate` makes now.
//!
//! And they keep to the measurements:
//!
//! - the bench tables committed under `docs/src/generated/` are what
//!   `lab bench --rerender DIR --book OUT` makes now from the report each
//!   names, so a table cannot go stale;
//! - every number cited from a report is in it. The convention: a number
//!   taken from a report is written as a link to that report, the link's
//!   text the number (and its unit), e.g. from a chapter in
//!   `docs/src/models/`:
//!   `[4.62 µs](../../results/2026-11-27-all-models-a976cfc/report.md)`.
//!   A reference link does as well (`[4.62 µs][a976cfc]`, with
//!   `[a976cfc]: ../../results/2026-11-27-all-models-a976cfc/report.md`
//!   at the foot of the page). Each number in the link's text (digits, a
//!   decimal point, thousands commas; code spans in it are labels, not
//!   numbers) must be in the linked file as the same value (`1,613` is
//!   `1613.0`, `2.00` is `2`; `4.6` is not `4.62`): `report.md` for the
//!   table's figures, `report.json` for what only it holds (the server's
//!   summaries, unrounded values).

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
                if let Err(e) = iolab::tools::cli::command().try_get_matches_from(argv) {
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
    assert!(iolab::tools::cli::command()
        .try_get_matches_from(["lab", "epoll", "--no-such-flag"])
        .is_err());
    assert!(iolab::tools::cli::command()
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
        // Inline links, reference definitions and mdBook includes.
        let mut targets: Vec<String> = text
            .match_indices("](")
            .filter_map(|(i, _)| {
                let target = &text[i + 2..];
                target.find(')').map(|end| target[..end].to_string())
            })
            .collect();
        targets.extend(link_definitions(&text).into_values());
        targets.extend(text.match_indices("{{#include ").filter_map(|(i, _)| {
            let target = &text[i + "{{#include ".len()..];
            target.find("}}").map(|end| target[..end].to_string())
        }));
        for target in targets {
            let target = target.split('#').next().unwrap().trim();
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

/// Every word of the project's own source: src/, tests/, benches/ and
/// Cargo.toml, code and comments alike.
fn source_words() -> BTreeSet<String> {
    let mut files = vec![root().join("Cargo.toml")];
    for dir in ["src", "tests", "benches"] {
        files.extend(files_under(root().join(dir)));
    }
    let mut words = BTreeSet::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        words.extend(
            text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(String::from),
        );
    }
    words
}

/// Names the docs give in backticks that look like ours but are the
/// kernel's, /proc's or another project's, and are named nowhere in the
/// source. A rule covers the kernel's prefixed constants
/// ([`KERNEL_PREFIXES`]); these are the rest.
const NOT_OURS: &[&str] = &[
    // System calls and kernel slab caches.
    "epoll_pwait",
    "io_submit",
    "io_uring_setup",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigsuspend",
    "set_robust_list",
    "eventpoll_epi",
    "sock_inode_cache",
    // Kernel functions a profile names.
    "io_send",
    "io_file_get_normal",
    "tcp_sendmsg",
    // The io-uring crate's name for a registered buffer's index.
    "buf_index",
    // A kernel function: the callback epoll hangs on a socket's wait queue.
    "ep_poll_callback",
    // io_uring flags named without their prefix, and a kernel constant.
    "DEFER_TASKRUN",
    "EXT_ARG",
    "SEND_ZC",
    "SINGLE_ISSUER",
    "IO_LOCAL_TW_DEFAULT_MAX",
    // Fields of /proc/meminfo and /proc/PID/status.
    "KernelStack",
    "MemAvailable",
    "PageTables",
    "Rss",
    "Slab",
    "VmSize",
    // Rust's std (Poll::Pending, Pin), tokio, .NET, Python's gevent.
    "Pending",
    "Pin",
    "spawn_blocking",
    "max_blocking_time",
    "ThreadLocal",
    "GreenletExit",
    // Kernel functions a flame graph shows (docs/src/where-the-time-goes.md).
    "tcp_sendmsg",
    "tcp_recvmsg",
    "__tcp_transmit_skb",
    "ip_output",
    "__dev_queue_xmit",
    "do_softirq",
    "net_rx_action",
    "tcp_v4_rcv",
    "tcp_rcv_established",
    "sock_def_readable",
    "ep_send_events",
    "_raw_spin_unlock_irqrestore",
    "finish_task_switch",
    "io_uring_enter",
    "io_issue_sqe",
    // Gone, and the book says so: the switch function before 2026-11-27.
    "iolab_coro_switch",
];

/// The prefixes of the kernel's constants (`IORING_SETUP_SQPOLL`,
/// `O_DIRECT`, `SIGRT_2`): a SCREAMING name starting so is not ours.
const KERNEL_PREFIXES: &[&str] = &[
    "IORING_", "O_", "F_", "SO_", "SOCK_", "MSG_", "TCP_", "RLIMIT_", "SIG", "EPOLL", "MAP_",
    "PROT_", "CLONE_", "AF_", "IOSQE_", "IOU_",
];

/// What a code span names, if it is a bare identifier that looks like a
/// Rust item: `snake_case_fn` (with an underscore), `CamelType`,
/// `SCREAMING_CONST` (with an underscore); a trailing `()`, `(args)` or
/// `!` is dropped.
fn bare_identifier(span: &str) -> Option<&str> {
    let span = span.trim();
    let name = match span.find('(') {
        Some(open) if span.ends_with(')') => &span[..open],
        Some(_) => return None,
        None => span,
    };
    let name = name.trim_end_matches('!');
    let mut chars = name.chars();
    let first = chars.next()?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let snake = first.is_ascii_lowercase()
        && name.contains('_')
        && !name.contains("__")
        && !name.ends_with('_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let camel = first.is_ascii_uppercase()
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && !name.contains('_');
    let screaming = first.is_ascii_uppercase()
        && name.contains('_')
        && !name.ends_with('_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    (snake || camel || screaming).then_some(name)
}

/// Every long option of `lab` and its subcommands, `--` included.
fn lab_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::from(["--help".to_string(), "--version".to_string()]);
    let lab = iolab::tools::cli::command();
    let mut commands = vec![&lab];
    while let Some(command) = commands.pop() {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                flags.insert(format!("--{long}"));
            }
        }
        commands.extend(command.get_subcommands());
    }
    flags
}

#[test]
fn every_bare_name_and_flag_the_docs_give_is_ours() {
    let words = source_words();
    let flags = lab_flags();
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for span in code_spans(&text) {
            // A flag alone, or with its value: `--edge`, `--out DIR`.
            if let Some(flag) = span.trim().split(' ').next().filter(|f| {
                f.starts_with("--") && f[2..].starts_with(|c: char| c.is_ascii_lowercase())
            }) {
                checked += 1;
                let flag = flag.split('=').next().unwrap();
                if !flags.contains(flag) {
                    missing.push(format!("{}: `{span}`: lab has no {flag}", relative(&file)));
                }
                continue;
            }
            let Some(name) = bare_identifier(&span) else {
                continue;
            };
            if NOT_OURS.contains(&name) || KERNEL_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            checked += 1;
            if !words.contains(name) {
                missing.push(format!(
                    "{}: `{span}`: `{name}` is named nowhere in src/, tests/ or benches/",
                    relative(&file)
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    assert!(checked > 500, "only {checked} names and flags found");
}

#[test]
fn the_bare_name_rules_pick_what_looks_like_ours() {
    assert_eq!(
        bare_identifier("move_unsent_into"),
        Some("move_unsent_into")
    );
    assert_eq!(bare_identifier("take_unsent()"), Some("take_unsent"));
    assert_eq!(bare_identifier("free_if_idle(slot)"), Some("free_if_idle"));
    assert_eq!(bare_identifier("ConnPermit"), Some("ConnPermit"));
    assert_eq!(bare_identifier("MAX_CONNS"), Some("MAX_CONNS"));
    assert_eq!(bare_identifier("syscall!"), None); // no underscore
    assert_eq!(bare_identifier("recv"), None);
    assert_eq!(bare_identifier("EPOLLET"), None);
    assert_eq!(bare_identifier("rr-100"), None);
    assert_eq!(bare_identifier("lab bench"), None);
    assert_eq!(bare_identifier("Box<[u8]>"), None);
    assert!(lab_flags().contains("--no-multishot"));
    assert!(lab_flags().contains("--book"));
}

#[test]
fn the_committed_book_tables_are_current() {
    let generated = root().join("docs/src/generated");
    let mut stale = Vec::new();
    let mut commands = BTreeSet::new();
    let sources = files_under(generated)
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|n| n == "source.md"));
    for source in sources {
        let folder = source.parent().unwrap();
        let text = std::fs::read_to_string(&source).unwrap();
        let (report_dir, out) = iolab::tools::bench::book::parse_header(&text)
            .unwrap_or_else(|| panic!("{} names no report", relative(&source)));
        assert_eq!(
            root().join(&out),
            folder,
            "{} says it was written to {out}",
            relative(&source)
        );
        let json = std::fs::read_to_string(root().join(&report_dir).join("report.json"))
            .unwrap_or_else(|e| panic!("{}: {report_dir}/report.json: {e}", relative(&source)));
        let report: iolab::tools::bench::BenchReport = serde_json::from_str(&json).unwrap();
        let fresh = iolab::tools::bench::book::render(&report, &report_dir, &out);
        let command =
            format!("cargo run --release --bin lab -- bench --rerender {report_dir} --book {out}");
        for snippet in &fresh {
            let committed = std::fs::read_to_string(folder.join(&snippet.name)).unwrap_or_default();
            if committed != snippet.text {
                stale.push(format!("{out}/{}", snippet.name));
                commands.insert(command.clone());
            }
        }
        // The charts are drawn from the report alone (no font is measured,
        // no date written), so they are compared byte for byte too.
        let charts = iolab::tools::bench::charts::render(&report).unwrap();
        for chart in &charts {
            let path = folder.join("charts").join(&chart.name);
            if std::fs::read_to_string(&path).unwrap_or_default() != chart.svg {
                stale.push(format!("{out}/charts/{}", chart.name));
                commands.insert(command.clone());
            }
        }
        for entry in std::fs::read_dir(folder.join("charts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !charts.iter().any(|c| c.name == name) {
                stale.push(format!("{out}/charts/{name} (no longer made)"));
                commands.insert(command.clone());
            }
        }
        for entry in std::fs::read_dir(folder).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if text.starts_with(iolab::tools::bench::book::MARKER)
                && !fresh.iter().any(|s| s.name == name)
            {
                stale.push(format!("{out}/{name} (no longer made)"));
                commands.insert(command.clone());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale book tables: {}\nrun: {}",
        stale.join(", "),
        commands.into_iter().collect::<Vec<_>>().join("\n     ")
    );
}

/// The paragraphs of a Markdown text outside fenced blocks, each on one line.
fn paragraphs(text: &str) -> Vec<String> {
    let mut paragraphs = Vec::new();
    let mut in_fence = false;
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
            if !paragraph.is_empty() {
                paragraphs.push(std::mem::take(&mut paragraph));
            }
        } else {
            paragraph.push_str(line);
            paragraph.push(' ');
        }
    }
    paragraphs
}

/// The link reference definitions of a Markdown text (`[label]: target`,
/// outside fenced blocks), by label in lower case.
fn link_definitions(text: &str) -> std::collections::HashMap<String, String> {
    let mut definitions = std::collections::HashMap::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence || line.len() - trimmed.len() > 3 {
            continue;
        }
        let Some((label, target)) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("]:"))
        else {
            continue;
        };
        if label.contains(['[', ']']) {
            continue; // `[text][label]: …`, a link at the start of a line
        }
        if let Some(target) = target.split_whitespace().next() {
            definitions.insert(label.to_lowercase(), target.to_string());
        }
    }
    definitions
}

/// The links of a paragraph: (text, target), inline (`[text](target)`)
/// or by reference (`[text][label]`, the label's target from
/// `definitions`).
fn links(
    paragraph: &str,
    definitions: &std::collections::HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in paragraph.match_indices("][") {
        let Some(open) = opening_bracket(paragraph, at) else {
            continue;
        };
        let rest = &paragraph[at + 2..];
        let Some(end) = rest.find(']') else {
            continue;
        };
        if let Some(target) = definitions.get(&rest[..end].to_lowercase()) {
            found.push((paragraph[open + 1..at].to_string(), target.clone()));
        }
    }
    found.extend(inline_links(paragraph));
    found
}

/// The `[` that opens the link text whose `]` is at `close`, brackets
/// nested or not.
fn opening_bracket(paragraph: &str, close: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in paragraph[..close].char_indices().rev() {
        match c {
            ']' => depth += 1,
            '[' if depth == 0 => return Some(i),
            '[' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The inline links of a paragraph: (text, target).
fn inline_links(paragraph: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in paragraph.match_indices("](") {
        let open = opening_bracket(paragraph, at);
        let target = &paragraph[at + 2..];
        let (Some(open), Some(end)) = (open, target.find(')')) else {
            continue;
        };
        found.push((
            paragraph[open + 1..at].to_string(),
            target[..end].trim().to_string(),
        ));
    }
    found
}

/// The numbers in a text, as written but without thousands commas:
/// `1,953,226` → `1953226`, `4.62` → `4.62`. Digits glued to a letter
/// before them (`p99`, `c10k`) are part of a name, not a number.
fn numbers(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(|c| c.is_ascii_digit());
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let glued = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let after_point = i > 1 && chars[i - 1] == '.' && digit(i - 2);
        if !digit(i) || glued || after_point {
            i += 1;
            continue;
        }
        let mut number = String::new();
        while digit(i) {
            number.push(chars[i]);
            i += 1;
        }
        // Thousands: a comma and exactly three digits.
        while chars.get(i) == Some(&',') && (1..=3).all(|k| digit(i + k)) && !digit(i + 4) {
            number.extend(&chars[i + 1..i + 4]);
            i += 4;
        }
        if chars.get(i) == Some(&'.') && digit(i + 1) {
            number.push('.');
            i += 1;
            while digit(i) {
                number.push(chars[i]);
                i += 1;
            }
        }
        found.push(number);
    }
    found
}

/// A number as a value: `2.00` and `2` are the same number, `1613.0` and
/// `1,613` too (commas are already gone), `4.6` and `4.62` are not.
fn value(number: &str) -> String {
    match number.split_once('.') {
        Some((whole, fraction)) => match fraction.trim_end_matches('0') {
            "" => whole.to_string(),
            fraction => format!("{whole}.{fraction}"),
        },
        None => number.to_string(),
    }
}

/// A link's text without its code spans: `` `rr-100` `` labels a number,
/// it is not one.
fn without_code(text: &str) -> String {
    text.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn every_number_cited_from_a_report_is_in_it() {
    let results = root().join("docs/results");
    let profiles = root().join("docs/src/figures/profiles");
    let mut in_report: std::collections::HashMap<PathBuf, BTreeSet<String>> = Default::default();
    let mut wrong = Vec::new();
    let mut cited = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        let definitions = link_definitions(&text);
        for paragraph in paragraphs(&text) {
            for (label, target) in links(&paragraph, &definitions) {
                let Ok(target) = dir.join(target.split('#').next().unwrap()).canonicalize() else {
                    continue; // a broken link: the link test says so
                };
                let is_report = (target.parent().and_then(Path::parent)
                    == Some(results.as_path())
                    && target
                        .file_name()
                        .is_some_and(|n| n == "report.md" || n == "report.json"))
                    // `lab profile`'s pages, committed beside their flame
                    // graphs.
                    || (target.starts_with(&profiles)
                        && target
                            .file_name()
                            .is_some_and(|n| n == "profile.md" || n == "profile.json"));
                if !is_report {
                    continue;
                }
                let known = in_report.entry(target.clone()).or_insert_with(|| {
                    let report = std::fs::read_to_string(&target).unwrap();
                    numbers(&report).iter().map(|n| value(n)).collect()
                });
                for number in numbers(&without_code(&label)) {
                    cited += 1;
                    if !known.contains(&value(&number)) {
                        wrong.push(format!(
                            "{}: [{label}] cites {number}, which is not in {}",
                            relative(&file),
                            relative(&target)
                        ));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(cited > 100, "only {cited} numbers cited from reports");
}

#[test]
fn the_citation_reader_finds_links_and_numbers() {
    let text = "epoll spent [4.62 µs](../../results/x/report.md) per request \
                ([`rr-100`: 173,238][X] req/s),\nsee [results](../results.md).\n\n\
                [x]: ../../results/x/report.json\n";
    let definitions = link_definitions(text);
    assert_eq!(
        links(&paragraphs(text)[0], &definitions),
        vec![
            (
                "`rr-100`: 173,238".into(),
                "../../results/x/report.json".into()
            ),
            ("4.62 µs".into(), "../../results/x/report.md".into()),
            ("results".into(), "../results.md".into()),
        ]
    );
    assert_eq!(
        numbers("1,953,226 and 4.62 µs, ±15 %"),
        ["1953226", "4.62", "15"]
    );
    assert_eq!(numbers("p99 c10k 5.8ms 10,100"), ["5.8", "10100"]);
    assert_eq!(numbers("1,2345"), ["1", "2345"]);
    assert_eq!(numbers(&without_code("`rr-1000` 170,198")), ["170198"]);
    assert_eq!(value("1613.0"), "1613");
    assert_eq!(value("2.00"), "2");
    assert_eq!(value("0.150"), "0.15");
    assert_eq!(value("4.62"), "4.62");
}
