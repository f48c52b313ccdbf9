//! The shape the code keeps, read from the sources themselves:
//!
//! - no function of the crates' own code (`ring/src`, `plugin/src`, `python/src`,
//!   `examples`, `e2e/src`, `testkit/src`, `bench`) is longer than [`MAX_FN_LINES`] lines, tests
//!   excepted (`#[cfg(test)]` modules and the `tests/` folders);
//! - the plugin's modules import each other without a cycle: every module of
//!   `plugin/src` can be read knowing only the ones it imports, and `codec/` imports
//!   nothing of the elements.
//!
//! Functions are found by their `fn` line and measured by matching braces, with
//! strings, characters and comments skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest a function may be, in lines from its `fn` to its closing brace.
const MAX_FN_LINES: usize = 120;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && name != "tests" && !name.to_string_lossy().starts_with('.') {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src` with the text of strings, characters and comments blanked (newlines kept),
/// so that braces and keywords in them do not count.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = rest
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 2);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if let Some(len) = raw_string(rest) {
            blank(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let len = (j + 1).min(rest.len());
            blank(&mut out, &rest[..len]);
            i += len;
        } else if let Some(len) = char_literal(rest) {
            blank(&mut out, &rest[..len]);
            i += len;
        } else {
            let c = src[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) at the start.
fn raw_string(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = start + hashes + 1;
    s[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map(|p| body + p + close.len())
}

/// The length of a character literal at the start (`'a'`, `'\n'`, `'\u{1F600}'`),
/// `None` for a lifetime.
fn char_literal(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'\'') {
        return None;
    }
    if s.get(1) == Some(&b'\\') {
        let end = s[2..].iter().position(|&c| c == b'\'')?;
        return Some(end + 3);
    }
    let text = std::str::from_utf8(&s[1..s.len().min(6)])
        .unwrap_or_else(|e| std::str::from_utf8(&s[1..1 + e.valid_up_to()]).unwrap());
    let c = text.chars().next()?;
    (s.get(1 + c.len_utf8()) == Some(&b'\'')).then_some(c.len_utf8() + 2)
}

/// Each function of `code` outside `#[cfg(test)]` modules: its name, first line
/// (1-based) and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    // Byte offset of each line's start.
    let mut starts = Vec::with_capacity(lines.len());
    let mut at = 0;
    for l in &lines {
        starts.push(at);
        at += l.len() + 1;
    }
    let line_of = |off: usize| starts.partition_point(|&s| s <= off);
    let b = code.as_bytes();
    // The end of the brace block opening at or after `from`.
    let block_end = |from: usize| -> Option<(usize, usize)> {
        let open = from + code[from..].find(['{', ';'])?;
        if b[open] == b';' {
            return None;
        }
        let mut depth = 0usize;
        for (k, &c) in b[open..].iter().enumerate() {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some((open, open + k));
                    }
                }
                _ => {}
            }
        }
        None
    };
    // Test modules, skipped whole.
    let mut skipped: Vec<(usize, usize)> = Vec::new();
    let mut search = 0;
    while let Some(p) = code[search..].find("#[cfg(test)]") {
        let p = search + p;
        if let Some((_, end)) = block_end(p) {
            skipped.push((p, end));
        }
        search = p + 1;
    }
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let Some(pos) = t.find("fn ") else { continue };
        let head = &t[..pos];
        let is_item = head.split_whitespace().all(|w| {
            w == "pub"
                || w.starts_with("pub(")
                || ["const", "async", "unsafe", "extern", "\"C\""].contains(&w)
        });
        if !is_item {
            continue;
        }
        let name: String = t[pos + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let off = starts[i] + (l.len() - t.len()) + pos;
        if skipped.iter().any(|&(s, e)| off > s && off < e) {
            continue;
        }
        if let Some((_, end)) = block_end(off) {
            out.push((name, i + 1, line_of(end) - i));
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let root = root();
    let mut files = Vec::new();
    for dir in [
        "ring/src",
        "plugin/src",
        "python/src",
        "examples",
        "e2e/src",
        "testkit/src",
        "bench",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut long = Vec::new();
    let mut counted = 0;
    for f in &files {
        let code = code_only(&std::fs::read_to_string(f).unwrap());
        for (name, line, len) in functions(&code) {
            counted += 1;
            if len > MAX_FN_LINES {
                let rel = f.strip_prefix(&root).unwrap().display().to_string();
                long.push(format!("{rel}:{line} {name}: {len} lines"));
            }
        }
    }
    assert!(counted > 500, "found only {counted} functions");
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The plugin module a file is (`codec::metas::records`), from its path under
/// `plugin/src`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The plugin modules `code` (of module `me`) names: `crate::a::b`, `super::x`.
/// A module's imports of its own ancestors (a child using what its parent defines
/// and re-exports) are not counted: they are how a folder module is built.
fn imports(code: &str, me: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // The module `super` names: the parent of the file's module (a `mod.rs` is its
    // folder's module, so its `super` is the folder's parent too).
    let parent = |m: &str| {
        m.rsplit_once("::")
            .map_or(String::new(), |(p, _)| p.to_owned())
    };
    let mut add = |path: String| {
        // The longest known module that prefixes the path.
        let mut best: Option<String> = None;
        let mut cur = String::new();
        for seg in path.split("::") {
            cur = if cur.is_empty() {
                seg.to_owned()
            } else {
                format!("{cur}::{seg}")
            };
            if modules.contains(&cur) {
                best = Some(cur.clone());
            }
        }
        if let Some(b) = best {
            if b != me && !me.starts_with(&format!("{b}::")) {
                out.insert(b);
            }
        }
    };
    let words = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_owned()
    };
    for (i, _) in code.match_indices("crate::") {
        add(words(&code[i + 7..]));
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code.as_bytes()[i - 1] == b':' {
            continue;
        }
        let mut base = parent(me);
        let mut rest = &code[i + 7..];
        while let Some(r) = rest.strip_prefix("super::") {
            base = parent(&base);
            rest = r;
        }
        let w = words(rest);
        add(if base.is_empty() {
            w
        } else {
            format!("{base}::{w}")
        });
    }
    out
}

#[test]
fn the_plugins_modules_import_each_other_without_a_cycle() {
    let src = root().join("plugin/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut code = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let mut text = code_only(&std::fs::read_to_string(f).unwrap());
        // Tests may reach anywhere.
        if let Some(p) = text.find("#[cfg(test)]\nmod tests") {
            text.truncate(p);
        }
        code.insert(module_of(rel), text);
    }
    let modules: BTreeSet<String> = code.keys().cloned().collect();
    assert!(modules.contains("codec::side"), "{modules:?}");
    let graph: BTreeMap<String, BTreeSet<String>> = code
        .iter()
        .map(|(m, text)| (m.clone(), imports(text, m, &modules)))
        .collect();
    // The codec uses nothing of the elements.
    for (m, deps) in &graph {
        if m.starts_with("codec") {
            let outside: Vec<_> = deps.iter().filter(|d| !d.starts_with("codec")).collect();
            assert!(outside.is_empty(), "{m} imports {outside:?}");
        }
    }
    // No cycle: a depth-first search finds no edge back to a module on its path.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if !done.insert(m.to_owned()) {
            return None;
        }
        path.push(m.to_owned());
        for d in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for m in graph.keys() {
        let mut d = done.clone();
        if let Some(c) = visit(m, &graph, &mut Vec::new(), &mut d) {
            cycles.push(c.join(" -> "));
        }
        done.insert(m.clone());
    }
    cycles.sort();
    cycles.dedup();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_readers_of_the_sources_read_what_is_there() {
    let code = code_only(
        "fn a() {\n    let s = \"}\";\n    let c = '}';\n    // }\n    let r = r#\"}\"#;\n}\n\
         #[cfg(test)]\nmod tests {\n    fn long() {\n    }\n}\n\
         pub(crate) fn b<'a>(x: &'a str) -> &'a str {\n    x\n}\n",
    );
    assert_eq!(
        functions(&code),
        vec![("a".to_owned(), 1, 6), ("b".to_owned(), 12, 3)]
    );
    let modules: BTreeSet<String> = ["codec", "codec::side", "codec::text", "shmringsrc::imp"]
        .map(String::from)
        .into();
    assert_eq!(
        imports(
            "use super::text::NONE; use crate::shmringsrc::imp::Src;",
            "codec::side",
            &modules
        ),
        ["codec::text", "shmringsrc::imp"].map(String::from).into()
    );
}
