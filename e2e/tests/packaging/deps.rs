//! Every GStreamer element and command-line tool that the tests, the examples and the
//! README's recipes use comes from a Debian package that `make deps` installs (or one
//! it depends on), so that the README's commands pass on a brand-new machine; an
//! element only the benchmarks use may come from what `make bench` adds.
//!
//! Elements are read from the pipeline strings themselves (every word that starts a
//! pipeline or follows a `!`), plus [`PICKED_AT_RUN_TIME`], a short list written by
//! hand of what GStreamer chooses by itself (the decoder `gst-discoverer-1.0` plugs to
//! describe the sandboxed encoder's MP4). `gst-inspect-1.0 NAME` names the plugin file,
//! `dpkg -S FILE` its package. An element that this GStreamer does not have at all
//! (one added in a later version, [`ADDED_LATER`]) is reported as absent, not as a
//! failure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::gst_plugin_dir;

/// What GStreamer picks at run time, which no pipeline string names.
const PICKED_AT_RUN_TIME: &[(&str, &str)] = &[
    (
        "avdec_h264",
        "gst-discoverer-1.0 decodes the sandboxed encoder's H.264 to describe it",
    ),
    (
        "qtdemux",
        "gst-discoverer-1.0 reads the sandboxed encoder's MP4",
    ),
    (
        "decodebin",
        "gst-discoverer-1.0 builds its pipeline with it",
    ),
    ("typefind", "decodebin finds the MP4's type with it"),
];

/// Elements some GStreamer versions do not have: name and the version that added it.
const ADDED_LATER: &[(&str, (u32, u32))] = &[("unixfdsink", (1, 24)), ("unixfdsrc", (1, 24))];

/// This project's own programs, which its `.deb` and `make install` put in place.
const PROJECT_TOOLS: &[&str] = &["shmring", "/usr/bin/shmring"];

/// Tools the README's commands need before `make deps` can run at all.
const PREREQUISITES: &[&str] = &["make", "cargo", "rustup"];

/// Where pipeline strings and tool names are read, relative to the workspace root.
const SOURCES: &[&str] = &[
    "README.md",
    "Makefile",
    "examples",
    "e2e/src",
    "e2e/tests",
    "plugin/tests",
    "cli/tests",
    "bench/benches",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every source file under `SOURCES`, with whether it is used by the benchmarks only.
fn source_files() -> Vec<(PathBuf, bool)> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out);
            }
        } else {
            let name = p.file_name().unwrap().to_string_lossy();
            let ext = p.extension().map(|e| e.to_string_lossy().into_owned());
            if name == "Makefile" || matches!(ext.as_deref(), Some("rs" | "py" | "sh" | "md")) {
                out.push(p.to_path_buf());
            }
        }
    }
    let mut files = Vec::new();
    for s in SOURCES {
        walk(&root().join(s), &mut files);
    }
    files
        .into_iter()
        .map(|f| {
            let bench = f.components().any(|c| c.as_os_str() == "benches");
            (f, bench)
        })
        .collect()
}

/// Joins what a source splits over lines but a pipeline reads as one: a backslash at
/// the end of a line (shell, Rust string continuation) and adjacent string literals
/// (`"a ! "` newline `"b"`, in Rust or Python).
fn join_continuations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let mut line = lines[i].to_owned();
        while i + 1 < lines.len() {
            let next = lines[i + 1].trim_start();
            if let Some(head) = line.strip_suffix('\\') {
                line = format!("{head} {next}");
            } else if line.trim_end().ends_with('"')
                && (next.starts_with('"') || next.starts_with("f\""))
            {
                let head = line.trim_end();
                let tail = next.trim_start_matches('f');
                line = format!("{}{}", &head[..head.len() - 1], &tail[1..]);
            } else {
                break;
            }
            i += 1;
        }
        out.push_str(&line);
        out.push('\n');
        i += 1;
    }
    out
}

/// Whether `w` can be an element factory name (not caps, a property, a pad reference
/// or a format placeholder).
fn element_like(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
        && !w.ends_with('-')
}

/// The first word of a pipeline segment, options (`-q`, `-e`, `-v`) skipped, and
/// format placeholders before it (`{ident}fakesink`) taken off.
fn first_word(segment: &str) -> Option<&str> {
    let mut w = segment
        .split(|c: char| c.is_whitespace() || c == '"' || c == '`' || c == '\'')
        .find(|w| !w.is_empty() && !w.starts_with('-'))?;
    while let Some(rest) = w.strip_prefix('{') {
        w = &rest[rest.find('}')? + 1..];
    }
    Some(w)
}

/// The element names in one source's pipeline strings.
fn pipeline_elements(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in join_continuations(text).lines() {
        // Where a link `!` stands: space or a quote before it, space, a quote or the
        // end after it; not `-> !` (a Rust type) nor `if !`.
        let bytes = line.as_bytes();
        let mut links = Vec::new();
        for (i, &c) in bytes.iter().enumerate() {
            if c != b'!' {
                continue;
            }
            let before = i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'"');
            let after = i + 1 == bytes.len() || matches!(bytes[i + 1], b' ' | b'"' | b'`');
            let head = line[..i].trim_end();
            if before && after && !head.ends_with("->") && !head.ends_with("if") {
                links.push(i);
            }
        }
        if links.is_empty() {
            continue;
        }
        // A pipeline starts after an opening quote, backtick or `gst-launch-1.0`: in
        // the segment before the first link, and in any other that a new pipeline
        // starts in (`a ! b` and `c ! d` on one line of prose).
        let mut segments = vec![&line[..links[0]]];
        for (k, &at) in links.iter().enumerate() {
            let end = links.get(k + 1).copied().unwrap_or(line.len());
            segments.push(&line[at + 1..end]);
        }
        let last = segments.len() - 1;
        for (k, s) in segments.into_iter().enumerate() {
            // `gst-launch-1.0` first: a quote after it is a quoted property value.
            let start = s.rfind("gst-launch-1.0").map(|p| p + 14).or_else(|| {
                ["\"", "`", "'", "launch("]
                    .iter()
                    .filter_map(|m| s.rfind(m).map(|p| p + m.len()))
                    .max()
            });
            let mut words = vec![first_word(s)];
            if k < last {
                words.push(start.and_then(|p| first_word(&s[p..])));
            }
            if k == 0 && start.is_some() {
                words.remove(0); // before the opening quote: not pipeline text
            }
            for w in words.into_iter().flatten().filter(|w| element_like(w)) {
                found.insert(w.to_owned());
            }
        }
    }
    // Elements made by name in code.
    for pat in ["ElementFactory::make(\"", "ElementFactory.make(\""] {
        for (at, _) in text.match_indices(pat) {
            let rest = &text[at + pat.len()..];
            if let Some(end) = rest.find('"') {
                found.insert(rest[..end].to_owned());
            }
        }
    }
    found
}

/// The command-line tools one source runs: `Command::new("x")`, absolute
/// `/usr/bin/x` paths, and GStreamer's `gst-*-1.0` tools wherever they are named.
fn tools(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("Command::new(\"") {
        let rest = &text[at + 14..];
        if let Some(end) = rest.find('"') {
            found.insert(rest[..end].to_owned());
        }
    }
    for w in text.split(|c: char| !(c.is_ascii_alphanumeric() || "-_./".contains(c))) {
        let w = w.trim_end_matches('.');
        if w.starts_with("/usr/bin/") && w.len() > "/usr/bin/".len() {
            found.insert(w.to_owned());
        }
        for part in w.split('/') {
            if part.starts_with("gst-") && part.ends_with("-1.0") {
                found.insert(part.to_owned());
            }
        }
    }
    found
}

/// Installed packages: name -> (what it provides, what it depends on: each a list of
/// alternatives).
type Packages = HashMap<String, (Vec<String>, Vec<Vec<String>>)>;

fn installed_packages() -> Packages {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package}\t${db:Status-Abbrev}\t${Provides}\t${Depends}, ${Pre-Depends}\n",
        ])
        .output()
        .expect("dpkg-query (a Debian machine)");
    let name = |s: &str| {
        s.split_whitespace()
            .next()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let mut pkgs = Packages::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 || !f[1].starts_with("ii") {
            continue;
        }
        let provides = f[2]
            .split(',')
            .map(name)
            .filter(|n| !n.is_empty())
            .collect();
        let depends = f[3]
            .split(',')
            .map(|alts| {
                alts.split('|')
                    .map(name)
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.is_empty())
            .collect();
        pkgs.insert(name(f[0]), (provides, depends));
    }
    pkgs
}

/// Every installed package that `roots` bring in through Depends and Pre-Depends
/// (what `apt-get install --no-install-recommends` installs), each with the root it
/// came from.
fn closure(pkgs: &Packages, roots: &[String]) -> BTreeMap<String, String> {
    let mut providers: HashMap<&str, Vec<&str>> = HashMap::new();
    for (p, (provides, _)) in pkgs {
        for v in provides {
            providers.entry(v).or_default().push(p);
        }
    }
    let mut seen = BTreeMap::new();
    for root in roots {
        let mut todo = vec![root.clone()];
        while let Some(p) = todo.pop() {
            if seen.contains_key(&p) {
                continue;
            }
            let Some((_, deps)) = pkgs.get(&p) else {
                continue;
            };
            seen.insert(p.clone(), root.clone());
            for alts in deps {
                for a in alts {
                    if pkgs.contains_key(a) {
                        todo.push(a.clone());
                    }
                    for real in providers.get(a.as_str()).into_iter().flatten() {
                        todo.push((*real).to_owned());
                    }
                }
            }
        }
    }
    seen
}

/// The package dpkg says installed `file`, if any. dpkg knows a file by the path its
/// package ships it under, which on a merged-/usr system may be `/bin/x` for what is
/// found as `/usr/bin/x`, or the other way round: each form is asked.
fn package_of(file: &Path) -> Option<String> {
    let real = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let mut forms = vec![file.to_path_buf(), real.clone()];
    if let Ok(short) = real.strip_prefix("/usr") {
        forms.push(Path::new("/").join(short));
    }
    forms.into_iter().find_map(|f| {
        let out = Command::new("dpkg").arg("-S").arg(&f).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next()?;
        Some(line.split(':').next()?.trim().to_owned())
    })
}

/// Base-system packages: on every Debian machine, whatever `make deps` lists.
fn base_system(pkg: &str) -> bool {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Priority} ${Essential}", pkg])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    s.starts_with("required") || s.ends_with("yes")
}

/// The plugin file `gst-inspect-1.0 name` reports, or None when it has no such element.
fn plugin_file(name: &str) -> Option<PathBuf> {
    let out = Command::new("gst-inspect-1.0")
        .arg(name)
        .env("GST_PLUGIN_PATH", gst_plugin_dir())
        .output()
        .expect("gst-inspect-1.0 (gstreamer1.0-tools) installed");
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Filename"))
        .map(|f| PathBuf::from(f.trim()))
}

fn gstreamer_version() -> (u32, u32) {
    let out = Command::new("gst-inspect-1.0")
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("GStreamer "))
        .expect("GStreamer version line");
    let mut it = v.trim().split('.').map(|n| n.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// What `make deps-list` says `make deps` and `make bench` install.
fn makefile_packages() -> (Vec<String>, Vec<String>) {
    let out = Command::new("make")
        .args(["-s", "--no-print-directory", "-C"])
        .arg(root())
        .arg("deps-list")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("make");
    assert!(out.status.success(), "make deps-list: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let list = |key: &str| -> Vec<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("make deps-list prints no {key} line: {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    (list("deps:"), list("bench:"))
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    if tool.starts_with('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

#[test]
fn every_element_and_tool_used_comes_from_a_package_make_deps_installs() {
    // Name -> (used outside the benchmarks, where it was first seen).
    let mut elements: BTreeMap<String, (bool, String)> = BTreeMap::new();
    let mut tools_used: BTreeMap<String, (bool, String)> = BTreeMap::new();
    let note = |map: &mut BTreeMap<String, (bool, String)>, name: String, bench: bool, at: &str| {
        let e = map.entry(name).or_insert((false, at.to_owned()));
        if !bench && !e.0 {
            *e = (true, at.to_owned());
        }
    };
    for (file, bench) in source_files() {
        if file.ends_with(file!()) {
            continue; // this file's strings are the parser's own test cases
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let at = file.strip_prefix(root()).unwrap().display().to_string();
        for e in pipeline_elements(&text) {
            note(&mut elements, e, bench, &at);
        }
        for t in tools(&text) {
            note(&mut tools_used, t, bench, &at);
        }
    }
    for (e, why) in PICKED_AT_RUN_TIME {
        note(&mut elements, (*e).to_owned(), false, why);
    }
    // The guard must see what it guards: a handful it cannot miss.
    for must in [
        "shmringsink",
        "shmringsrc",
        "videotestsrc",
        "x264enc",
        "avdec_h264",
    ] {
        assert!(
            elements.contains_key(must),
            "not found in the sources: {must}"
        );
    }
    for must in ["gst-launch-1.0", "gst-discoverer-1.0", "/usr/bin/python3"] {
        assert!(
            tools_used.contains_key(must),
            "not found in the sources: {must}"
        );
    }

    let (deps, bench) = makefile_packages();
    let pkgs = installed_packages();
    let not_installed: Vec<_> = deps.iter().filter(|p| !pkgs.contains_key(*p)).collect();
    assert!(
        not_installed.is_empty(),
        "make deps lists packages that are not installed (run make deps): {not_installed:?}"
    );
    let from_deps = closure(&pkgs, &deps);
    let from_bench = closure(&pkgs, &[deps.clone(), bench].concat());
    let project = std::fs::canonicalize(gst_plugin_dir()).unwrap();
    let gst = gstreamer_version();

    // One verdict for a file that `what` (an element or a tool) was found in: Ok with
    // the package it comes from, or Err saying what is wrong.
    let judge = |what: &str, kind: &str, file: &Path, anywhere: bool, at: &str| {
        let Some(pkg) = package_of(file) else {
            return Err(format!(
                "{kind} {what} ({at}) is in {}, which no Debian package installed",
                file.display()
            ));
        };
        let allowed = if anywhere { &from_deps } else { &from_bench };
        let target = if anywhere { "make deps" } else { "make bench" };
        match allowed.get(&pkg) {
            Some(root) => Ok(format!("{kind} {what}: {pkg} (via {root})")),
            None if base_system(&pkg) => Ok(format!("{kind} {what}: {pkg} (base system)")),
            None => Err(format!(
                "{kind} {what} ({at}) comes from {pkg}, which {target} does not install"
            )),
        }
    };
    let mut verdicts = Vec::new();
    for (name, (anywhere, at)) in &elements {
        verdicts.push(match plugin_file(name) {
            Some(f) if std::fs::canonicalize(&f).is_ok_and(|f| f.starts_with(&project)) => {
                Ok(format!("element {name}: this project's plugin"))
            }
            Some(f) => judge(name, "element", &f, *anywhere, at),
            None => match ADDED_LATER.iter().find(|(n, _)| n == name) {
                Some((_, v)) if gst < *v => Ok(format!(
                    "element {name}: absent (GStreamer {}.{} has none; added in {}.{})",
                    gst.0, gst.1, v.0, v.1
                )),
                _ => Err(format!(
                    "element {name} ({at}) is not installed: no package that make deps installs has it"
                )),
            },
        });
    }
    for (name, (anywhere, at)) in &tools_used {
        if PROJECT_TOOLS.contains(&name.as_str()) {
            verdicts.push(Ok(format!("tool {name}: this project's own")));
            continue;
        }
        verdicts.push(match find_in_path(name) {
            None => Err(format!("tool {name} ({at}) is not installed")),
            Some(_) if PREREQUISITES.contains(&name.as_str()) => Ok(format!(
                "tool {name}: a prerequisite of the README's commands"
            )),
            Some(f) => judge(name, "tool", &f, *anywhere, at),
        });
    }
    let (report, failures): (Vec<_>, Vec<_>) = verdicts.into_iter().partition(Result::is_ok);
    let report: Vec<String> = report.into_iter().map(Result::unwrap).collect();
    let failures: Vec<String> = failures.into_iter().map(Result::unwrap_err).collect();
    for p in PREREQUISITES {
        assert!(find_in_path(p).is_some(), "prerequisite {p} not found");
    }
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} used but not installed by the Makefile:\n{}\n\nchecked:\n{}",
        failures.len(),
        failures.join("\n"),
        report.join("\n")
    );
}

#[test]
fn pipeline_strings_are_read_the_way_gst_launch_reads_them() {
    let rust = "let p = format!(\n    \"videotestsrc is-live=true ! \"\n    \"video/x-raw,width=8 ! tee name=t t. ! queue ! {sink} ! fakesink\"\n);\nfn f() -> ! { loop {} }\nif ! true { }";
    let shell = "gst-launch-1.0 -q audiotestsrc wave=sine \\\n  ! audio/x-raw,rate=48000 \\\n  ! shmringsink socket-path=\"$sock\" &\n    gst-launch-1.0 udpsrc caps=\"application/x-rtp\" ! rtph264depay";
    let python = "    f\"shmringsrc socket-path={path} ! audioconvert ! \"\n    \"level interval=1 ! fakesink\"";
    let md = "runs `shmringsrc ! fakesink sync=true` and `videotestsrc is-live=true ! video/x-raw,format=I420,\nheight=1080 ! shmringsink`";
    let names = |t: &str| pipeline_elements(t).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(rust),
        ["fakesink", "queue", "tee", "videotestsrc"],
        "{rust}"
    );
    assert_eq!(
        names(shell),
        ["audiotestsrc", "rtph264depay", "shmringsink", "udpsrc"]
    );
    assert_eq!(
        names(python),
        ["audioconvert", "fakesink", "level", "shmringsrc"]
    );
    assert_eq!(
        names(md),
        ["fakesink", "shmringsink", "shmringsrc", "videotestsrc"]
    );
    assert_eq!(
        tools("Command::new(\"setpriv\") gst-discoverer-1.0 x.mp4; /usr/bin/python3 s.py")
            .into_iter()
            .collect::<Vec<_>>(),
        ["/usr/bin/python3", "gst-discoverer-1.0", "setpriv"]
    );
}
