//! `lab annotate`: a model's source as a page, its comments beside its code.
//!
//! The lab's source is written to be read: every model file opens with a
//! module comment (the model, a timeline, costs, failure modes) and its
//! comments say why. This renders a file the way docco does: the file is cut
//! into sections, each a run of comment lines (the prose, rendered as
//! Markdown on the left) followed by the code up to the next comment (on the
//! right). Reading down the left column tells the story; the right column
//! is the proof.
//!
//! The sources are compiled into the binary (`include_str!`), so the pages
//! always show the code of the `lab` that made them; `tests/docs.rs` checks
//! that the pages committed under `docs/src/annotated/` are current.
//! Nothing here is clever: a line whose first non-blank characters are `//`
//! is prose, anything else is code, and `#[cfg(test)]` ends the page (the
//! unit tests are in the file, one click away).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::models::Model;

use crate::models::{source, Source};

/// A shared piece: its page name, what it is, its source.
struct Shared {
    name: &'static str,
    what: &'static str,
    source: Source,
}

/// The shared pieces, each with a page: what the models stand on.
const SHARED: &[Shared] = &[
    Shared {
        name: "handler",
        what: "the blocking family's one connection handler",
        source: source!("server/handler.rs"),
    },
    Shared {
        name: "process",
        what: "the process table of fork and prefork: spawning, reaping",
        source: source!("models/process.rs"),
    },
    Shared {
        name: "driver",
        what: "the readiness family's one event loop body",
        source: source!("server/driver.rs"),
    },
    Shared {
        name: "conn",
        what: "a connection as a state machine",
        source: source!("server/conn.rs"),
    },
    Shared {
        name: "protocol",
        what: "the codec: bytes in, answers out",
        source: source!("server/protocol.rs"),
    },
    Shared {
        name: "listener",
        what: "binding, accepting, the spare descriptor for EMFILE",
        source: source!("server/listener.rs"),
    },
    Shared {
        name: "shutdown",
        what: "signals, draining, the connection registry",
        source: source!("server/shutdown.rs"),
    },
    Shared {
        name: "readiness",
        what: "select, poll, epoll and signal wrappers",
        source: source!("sys/readiness.rs"),
    },
    Shared {
        name: "slab",
        what: "the generational table every loop keeps its connections in",
        source: source!("server/slab.rs"),
    },
    Shared {
        name: "readiness_state",
        what: "what a reactor remembers about a socket between events",
        source: source!("server/readiness_state.rs"),
    },
];

/// The style every page uses: written once as [`STYLE_FILE`] beside the
/// pages, or inlined into a page printed on its own.
const STYLE_FILE: &str = "annotated.css";

/// The page for a model, self-contained (its style inlined): what
/// `lab annotate MODEL` prints.
pub fn page(model: &Model) -> io::Result<String> {
    model_page(model, &format!("<style>{STYLE}</style>"))
}

fn model_page(model: &Model, style: &str) -> io::Result<String> {
    let (sources, uses) = (model.sources, model.shared);
    let header = Header {
        title: model.name,
        what: model.summary,
        chapter: Some(format!("../models/{}.html", model.name)),
        uses,
    };
    Ok(render(&header, sources, style))
}

/// Writes a page per model and per shared piece, an index and the style
/// sheet they share into `dir`. Returns how many pages it wrote.
pub fn write_pages(chosen: &[&Model], dir: &Path) -> io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let style = format!("<link rel=\"stylesheet\" href=\"{STYLE_FILE}\">");
    std::fs::write(dir.join(STYLE_FILE), STYLE.trim_start())?;
    for model in chosen {
        let page = model_page(model, &style)?;
        std::fs::write(dir.join(format!("{}.html", model.name)), page)?;
    }
    for shared in SHARED {
        let header = Header {
            title: shared.name,
            what: shared.what,
            chapter: None,
            uses: &[],
        };
        let page = render(&header, std::slice::from_ref(&shared.source), &style);
        std::fs::write(dir.join(format!("{}.html", shared.name)), page)?;
    }
    std::fs::write(dir.join("index.html"), index(chosen, &style))?;
    Ok(chosen.len() + SHARED.len() + 1)
}

/// What a page says above its sources.
struct Header<'a> {
    title: &'a str,
    what: &'a str,
    /// The book chapter it goes with, if any.
    chapter: Option<String>,
    /// The shared pieces it stands on, linked.
    uses: &'a [&'a str],
}

/// A section of a file: prose (Markdown) and the code after it. The
/// module's own documentation (`//!`) is a section of its own, shown across
/// the page: it is the chapter's summary and holds the wide timelines.
#[derive(Debug, Default, PartialEq)]
struct Section {
    prose: String,
    code: String,
    module_doc: bool,
}

/// Cuts a file into sections. A run of comment lines starts a section;
/// the code after it, up to the next comment line, belongs to it.
fn sections(text: &str) -> Vec<Section> {
    let mut sections = vec![Section::default()];
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let module_doc = line.trim_start().starts_with("//!");
        let current = sections.last_mut().expect("never empty");
        let starts_new = match comment_text(line) {
            // Prose after code, or module prose after item prose (or back).
            Some(_) => !current.code.trim().is_empty() || current.module_doc != module_doc,
            // Code never goes beside the module's documentation.
            None => current.module_doc,
        };
        if starts_new {
            sections.push(Section {
                module_doc,
                ..Section::default()
            });
        }
        let current = sections.last_mut().expect("never empty");
        match comment_text(line) {
            Some(prose) => {
                current.prose.push_str(prose);
                current.prose.push('\n');
            }
            None => {
                current.code.push_str(line);
                current.code.push('\n');
            }
        }
    }
    sections.retain(|s| !s.prose.trim().is_empty() || !s.code.trim().is_empty());
    for section in &mut sections {
        let trimmed = section.code.trim_matches('\n').to_string();
        section.code = trimmed;
    }
    sections
}

/// The prose of a comment line (`//!`, `///` or `//`, one space after the
/// marker dropped), or `None` for a line of code.
fn comment_text(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("//")?;
    let rest = rest
        .strip_prefix('!')
        .or_else(|| rest.strip_prefix('/'))
        .unwrap_or(rest);
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

/// Rustdoc's intra-doc links (`[`Conn`]`, `[text](Self::decode)`) point at
/// nothing on a plain page: keep their text, drop the link.
fn unlink_rustdoc(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let text = &after[..close];
        let tail = &after[close + 1..];
        if let Some(target) = tail.strip_prefix('(').and_then(|t| t.split_once(')')) {
            let (url, remainder) = target;
            if url.contains("://") || url.starts_with('#') || url.ends_with(".md") {
                out.push_str(&rest[open..open + 1 + close + 1 + url.len() + 2]);
            } else {
                out.push_str(text);
            }
            rest = remainder;
        } else if text.starts_with('`') && !tail.starts_with('[') {
            out.push_str(text);
            rest = tail;
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn markdown(prose: &str) -> String {
    let text = unlink_rustdoc(prose);
    let parser = pulldown_cmark::Parser::new_ext(&text, pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

fn escape(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for c in code.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn render(header: &Header<'_>, sources: &[Source], style: &str) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>{}</h1><p>{}</p><nav><a href=\"index.html\">all pages</a>",
        escape(header.title),
        escape(header.what)
    );
    if let Some(chapter) = &header.chapter {
        let _ = write!(body, " · <a href=\"{chapter}\">the chapter</a>");
    }
    if !header.uses.is_empty() {
        body.push_str(" · stands on:");
        for name in header.uses {
            let _ = write!(body, " <a href=\"{name}.html\">{name}</a>");
        }
    }
    body.push_str("</nav></header>\n");
    for source in sources {
        let _ = writeln!(
            body,
            "<h2 class=\"file\"><code>{}</code></h2>\n<table>",
            source.path
        );
        for section in sections(source.text) {
            if section.module_doc {
                let _ = writeln!(
                    body,
                    "<tr><td class=\"doc\" colspan=\"2\">{}</td></tr>",
                    markdown(&section.prose)
                );
                continue;
            }
            let code = if section.code.is_empty() {
                String::new()
            } else {
                format!("<pre><code>{}</code></pre>", escape(&section.code))
            };
            let _ = writeln!(
                body,
                "<tr><td class=\"prose\">{}</td><td class=\"code\">{code}</td></tr>",
                markdown(&section.prose)
            );
        }
        body.push_str("</table>\n");
    }
    wrap(
        &format!("{} — annotated source", header.title),
        &body,
        style,
    )
}

/// The index of the pages written: the chosen models (a page for a model
/// not written would be a dead link) and every shared piece.
fn index(chosen: &[&Model], style: &str) -> String {
    let mut body = String::from(
        "<header><h1>Annotated source</h1><p>Every model's source with its comments \
         beside its code. Read the left column down; glance right for the proof.</p>\
         <nav><a href=\"../introduction.html\">the book</a></nav></header>\n<h2>Models</h2><ul>",
    );
    for model in chosen {
        let _ = write!(
            body,
            "<li><a href=\"{0}.html\">{0}</a> — {1}</li>",
            model.name,
            escape(model.summary)
        );
    }
    body.push_str("</ul>\n<h2>Shared pieces</h2><ul>");
    for shared in SHARED {
        let _ = write!(
            body,
            "<li><a href=\"{0}.html\">{0}</a> — {1}</li>",
            shared.name, shared.what
        );
    }
    body.push_str("</ul>\n");
    wrap("iolab — annotated source", &body, style)
}

/// A whole HTML document; `style` is a `<style>` or a `<link>` element.
fn wrap(title: &str, body: &str, style: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n{style}\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// Two columns, prose narrow on the left, code on a grey ground on the
/// right; on a narrow screen the prose goes above its code.
const STYLE: &str = "
body { margin: 0; font: 15px/1.55 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #222; }
header { padding: 24px 32px 8px; max-width: 60em; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0 0 6px; color: #555; }
nav a { color: #0a5; }
h2 { padding: 0 32px; }
h2.file { margin: 32px 0 0; padding: 10px 32px; background: #f3f3f0; border-top: 1px solid #ddd; font-size: 15px; }
table { border-collapse: collapse; width: 100%; }
td { vertical-align: top; padding: 0; }
td.prose { width: 38%; min-width: 22em; max-width: 34em; padding: 10px 24px 10px 32px; border-right: 1px solid #e5e5e0; }
td.prose p, td.prose ul, td.prose ol { margin: 0 0 10px; }
td.prose pre { white-space: pre-wrap; font-size: 12px; background: #f8f8f6; padding: 6px; }
td.doc { padding: 12px 32px 16px; }
td.doc > * { max-width: 58em; }
td.doc pre { white-space: pre; overflow-x: auto; font-size: 12.5px; background: #f8f8f6; padding: 8px 12px; }
td.doc code { font-size: 13px; background: #f4f4f1; padding: 0 2px; }
td.doc pre code { background: none; padding: 0; }
td.doc h1 { font-size: 22px; } td.doc h2 { font-size: 18px; padding: 0; } td.doc h3 { font-size: 16px; }
td.prose code { font-size: 13px; background: #f4f4f1; padding: 0 2px; }
td.prose table td, td.prose table th { border: 1px solid #ddd; padding: 2px 6px; font-size: 13px; }
td.code { background: #fafaf7; padding: 10px 16px; }
td.code pre { margin: 0; font: 12.5px/1.5 'DejaVu Sans Mono', Menlo, Consolas, monospace; white-space: pre; overflow-x: auto; }
tr + tr td { border-top: 1px solid #eeeeea; }
@media (max-width: 900px) { td { display: block; width: auto !important; max-width: none !important; border-right: 0 !important; } }
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models;

    #[test]
    fn comments_start_sections_and_code_follows_them() {
        let text = "//! The module.\n\nuse x;\n\n/// Doc.\nfn f() {\n    // Why.\n    g();\n}\n";
        let got = sections(text);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].prose, "The module.\n");
        assert!(got[0].module_doc && got[0].code.is_empty());
        assert_eq!(
            (got[1].prose.as_str(), got[1].code.as_str()),
            ("", "use x;")
        );
        assert_eq!(got[2].prose, "Doc.\n");
        assert_eq!(got[2].code, "fn f() {");
        assert_eq!(got[3].prose, "Why.\n");
        assert_eq!(got[3].code, "    g();\n}");
    }

    #[test]
    fn the_page_stops_at_the_unit_tests() {
        let got = sections("fn a() {}\n#[cfg(test)]\nmod tests {}\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].code, "fn a() {}");
    }

    #[test]
    fn intra_doc_links_keep_their_text() {
        assert_eq!(
            unlink_rustdoc("see [`Conn`] and [decode](Self::decode), [x](https://e.org)"),
            "see `Conn` and decode, [x](https://e.org)"
        );
        assert_eq!(unlink_rustdoc("a[0] = [b]"), "a[0] = [b]");
    }

    #[test]
    fn every_model_has_a_page_that_escapes_its_code() {
        for model in models::all() {
            let html = page(model).unwrap();
            assert!(html.contains("<td class=\"prose\">"), "{}", model.name);
            assert!(
                !html.contains("<TcpListener>"),
                "{}: unescaped code",
                model.name
            );
        }
    }
}
