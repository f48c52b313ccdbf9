//! `shmring`: every shmring producer of this user and its consumers, live, as the
//! producers themselves tell a probe (a prober is never a consumer and costs a
//! producer no wait).
//!
//! ```text
//! shmring list [--json] [--timeout MS] [TARGET...]
//! shmring top [--once] [--json] [--interval MS] [--timeout MS] [TARGET...]
//! shmring inspect [--json] [--timeout MS] TARGET
//! ```
//!
//! A TARGET is a producer name (`producer-name=` of `shmringsink`), a socket path or
//! a `shmring://` URI; without one, every producer in the directory of named
//! producers. What a producer answers is its word: shown, never trusted, and a
//! producer that does not answer within the timeout gets a row saying so.

mod render;
mod rows;
mod sample;
mod tty;

use std::time::Duration;

use rows::Sort;
use sample::{Look, Target};

const USAGE: &str = "usage:
  shmring list [--json] [--timeout MS] [TARGET...]
      every producer (named ones, or the TARGETs) with its caps, consumers and state
  shmring top [--once] [--json] [--interval MS] [--timeout MS] [TARGET...]
      a live table refreshed every interval (1000 ms): one row per producer, one per
      consumer under it; keys: n f m d sort by name, frames/s, MB/s, drops; q quits
  shmring inspect [--json] [--timeout MS] TARGET
      everything a producer says about itself
A TARGET is a producer name, a socket path or a shmring:// URI. --timeout (500 ms)
bounds each producer's answer.";

/// The command line, parsed.
#[derive(Debug)]
struct Args {
    cmd: String,
    json: bool,
    once: bool,
    interval: Duration,
    timeout: Duration,
    targets: Vec<String>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let cmd = it.next().ok_or("no command")?;
    if !["list", "top", "inspect"].contains(&cmd.as_str()) {
        return Err(format!("unknown command {cmd:?}"));
    }
    let mut a = Args {
        cmd,
        json: false,
        once: false,
        interval: Duration::from_millis(1000),
        timeout: Duration::from_millis(500),
        targets: Vec::new(),
    };
    let ms = |v: Option<String>, what: &str| -> Result<Duration, String> {
        let v = v.ok_or(format!("{what} needs a number of milliseconds"))?;
        match v.parse::<u64>() {
            Ok(n) if (1..=3_600_000).contains(&n) => Ok(Duration::from_millis(n)),
            _ => Err(format!(
                "{what} {v:?} is not a number of milliseconds in 1..=3600000"
            )),
        }
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--json" => a.json = true,
            "--once" if a.cmd == "top" => a.once = true,
            "--interval" if a.cmd == "top" => a.interval = ms(it.next(), "--interval")?,
            "--timeout" => a.timeout = ms(it.next(), "--timeout")?,
            o if o.starts_with('-') => return Err(format!("unknown option {o:?}")),
            _ => a.targets.push(x),
        }
    }
    if a.cmd == "inspect" && a.targets.len() != 1 {
        return Err("inspect takes one TARGET".into());
    }
    Ok(a)
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return;
        }
        Some("--version") => {
            println!("shmring {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        _ => {}
    }
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shmring: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let code = match run(&a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shmring: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// The producers to look at now: the ones given, or every named one (looked for
/// again each time, so that `top` sees producers come and go).
fn targets(a: &Args) -> Result<Vec<Target>, String> {
    if a.targets.is_empty() {
        return Ok(sample::named_in(&gstshmring::names::directory()));
    }
    a.targets.iter().map(|t| sample::given(t)).collect()
}

fn run(a: &Args) -> Result<i32, String> {
    match a.cmd.as_str() {
        "list" => {
            let looks = sample::look_all(&targets(a)?, a.timeout);
            print(a, &rows::rows(&looks, &[]));
            Ok(0)
        }
        "inspect" => {
            let look = sample::look(targets(a)?.remove(0), a.timeout);
            let row = rows::rows(std::slice::from_ref(&look), &[]).remove(0);
            if a.json {
                print!("{}", render::json(std::slice::from_ref(&row)));
            } else {
                print!("{}", render::page(&row));
            }
            Ok(if look.answer.is_ok() { 0 } else { 1 })
        }
        _ if a.once || a.json => {
            let first = sample::look_all(&targets(a)?, a.timeout);
            std::thread::sleep(a.interval);
            let now = sample::look_all(&targets(a)?, a.timeout);
            print(a, &rows::rows(&now, &first));
            Ok(0)
        }
        _ => top(a).map(|()| 0),
    }
}

fn print(a: &Args, rows: &[rows::ProducerRow]) {
    if a.json {
        print!("{}", render::json(rows));
    } else {
        print!("{}", render::table(rows, tty::width()));
    }
}

/// The live table, until `q` (or Ctrl-C).
fn top(a: &Args) -> Result<(), String> {
    let raw = tty::Raw::enter().map_err(|e| format!("top needs a terminal ({e}); try --once"))?;
    let mut sort = Sort::Name;
    let mut before: Vec<Look> = Vec::new();
    loop {
        let now = sample::look_all(&targets(a)?, a.timeout);
        let mut rows = rows::rows(&now, &before);
        rows::sort(&mut rows, sort);
        let consumers: usize = rows.iter().map(|r| r.consumers.len()).sum();
        let (_, by) = sort.key_and_name();
        let head = format!(
            "shmring top: {} producer(s), {consumers} consumer(s); sorted by {by}; keys: n f m d sort, q quit\n\n",
            rows.len()
        );
        raw.draw(&(head + &render::table(&rows, tty::width())));
        before = now;
        let until = std::time::Instant::now() + a.interval;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match raw.key(left) {
                Some(b'q' | b'Q' | 3) => return Ok(()),
                Some(k) => {
                    if let Some(s) = Sort::of_key(k) {
                        sort = s;
                        break;
                    }
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Args, String> {
        parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_command_line_is_read_strictly() {
        let a = p(&["top", "--once", "--json", "--interval", "200", "cam"]).unwrap();
        assert!(a.once && a.json);
        assert_eq!(a.interval, Duration::from_millis(200));
        assert_eq!(a.targets, ["cam"]);
        assert!(
            p(&["list", "--once"])
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(
            p(&["top", "--interval", "0"])
                .unwrap_err()
                .contains("1..=3600000")
        );
        assert!(p(&["inspect"]).unwrap_err().contains("one TARGET"));
        assert!(p(&["frobnicate"]).unwrap_err().contains("unknown command"));
    }
}
