//! Running roles as child processes and reading their reports.

use super::*;

/// What one role process reported.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    pub(crate) n: u64,
    pub(crate) first_ns: u64,
    pub(crate) last_ns: u64,
    pub(crate) cpu_ns: u64,
    pub(crate) latencies_ns: Vec<i64>,
    pub(crate) stats: Option<String>,
    /// What the kernel counted from the first buffer to EOS (see `account`).
    pub(crate) usage: Option<account::Usage>,
}

impl Report {
    /// Buffers per second from the first to the last buffer.
    pub(crate) fn rate(&self) -> f64 {
        (self.n.saturating_sub(1)) as f64 / ((self.last_ns - self.first_ns).max(1) as f64 / 1e9)
    }
}

pub(crate) struct Role {
    pub(crate) desc: String,
    pub(crate) stamp: &'static str,
    pub(crate) measure: &'static str,
    pub(crate) latency: bool,
}

pub(crate) fn role_cmd(r: &Role, hold: bool) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--role")
        .arg(&r.desc)
        .arg(r.stamp)
        .arg(r.measure)
        .arg(if r.latency { "1" } else { "0" })
        .arg(if hold { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads a role's output to its end (or `deadline`), returning its lines.
pub(crate) fn collect(child: Child, deadline: Instant) -> Result<Vec<String>, String> {
    let mut child = child;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out".into());
            }
        }
    }
    let _ = child.wait();
    Ok(lines)
}

pub(crate) fn parse(lines: &[String]) -> Result<Report, String> {
    let mut r = Report::default();
    let mut got = false;
    for l in lines {
        if let Some(e) = l.strip_prefix("error ") {
            return Err(e.to_owned());
        }
        if let Some(s) = l.strip_prefix("stats ") {
            r.stats = Some(s.to_owned());
        }
        if let Some(u) = l.strip_prefix("usage ") {
            r.usage = account::decode(u);
        }
        if let Some(rest) = l.strip_prefix("result ") {
            let f: Vec<&str> = rest.split(' ').collect();
            let num = |i: usize| f[i].parse::<u64>().unwrap();
            r.n = num(0);
            r.first_ns = num(1);
            r.last_ns = num(2);
            r.cpu_ns = num(4) - num(3);
            r.latencies_ns = f
                .get(5)
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(|v| v.parse().unwrap()).collect())
                .unwrap_or_default();
            got = true;
        }
    }
    if got {
        Ok(r)
    } else {
        Err(format!("no result: {lines:?}"))
    }
}

/// Runs a producer process and, once it is ready, a consumer process.
pub(crate) fn run_pair(producer: &Role, consumer: &Role) -> Result<(Report, Report), String> {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut p = role_cmd(producer, true);
    let release = p.stdin.take();
    // Wait for "ready" on the producer's stdout before starting the consumer.
    let out = p.stdout.take().unwrap();
    let mut reader = BufReader::new(out);
    let mut first = String::new();
    let read = reader.read_line(&mut first);
    if read.is_err() || first.trim() != "ready" {
        let _ = p.kill();
        let _ = p.wait();
        return Err(format!("producer: {}", first.trim()));
    }
    let c = role_cmd(consumer, false);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = reader.lines().map_while(Result::ok).collect();
        let _ = tx.send(lines);
    });
    let cons = collect(c, deadline).and_then(|l| parse(&l));
    drop(release); // the producer may stop now
    let left = deadline.saturating_duration_since(Instant::now());
    let prod = match rx.recv_timeout(left) {
        Ok(lines) => {
            let _ = p.wait();
            parse(&lines)
        }
        Err(_) => {
            let _ = p.kill();
            let _ = p.wait();
            Err("did not finish within 45 s".into())
        }
    };
    match (prod, cons) {
        (Ok(p), Ok(c)) => Ok((p, c)),
        (_, Err(e)) => Err(format!("consumer: {e}")),
        (Err(e), _) => Err(format!("producer: {e}")),
    }
}

pub(crate) fn run_one(r: &Role) -> Result<Report, String> {
    let c = role_cmd(r, false);
    collect(c, Instant::now() + Duration::from_secs(45)).and_then(|l| parse(&l))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub(crate) fn percentile(sorted: &[i64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64
}
