//! Measuring and reporting: HDR latency histograms, the tool's and the server's CPU time
//! and RSS from /proc, the progress bar, and the report (tables or one JSON object).

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest latency a histogram keeps apart (10 minutes in microseconds); longer ones
/// are counted as this.
const MAX_US: u64 = 600_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Named latency histograms, in the order they were first recorded.
#[derive(Default, Clone)]
pub struct Latencies {
    ops: Vec<(String, Histogram<u64>)>,
}

impl Latencies {
    fn slot(&mut self, op: &str) -> &mut Histogram<u64> {
        let i = match self.ops.iter().position(|(n, _)| n == op) {
            Some(i) => i,
            None => {
                self.ops.push((op.to_string(), histogram()));
                self.ops.len() - 1
            }
        };
        &mut self.ops[i].1
    }

    pub fn record(&mut self, op: &str, d: Duration) {
        self.record_us(op, d.as_micros() as u64);
    }

    pub fn record_us(&mut self, op: &str, us: u64) {
        self.slot(op).saturating_record(us.clamp(1, MAX_US));
    }

    pub fn merge(&mut self, op: &str, h: &Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        // Same bounds everywhere, so adding cannot fail; saturate if it ever did.
        let slot = self.slot(op);
        if slot.add(h).is_err() {
            for v in h.iter_recorded() {
                slot.saturating_record_n(v.value_iterated_to().min(MAX_US), v.count_at_value());
            }
        }
    }

    pub fn count(&self, op: &str) -> u64 {
        self.ops.iter().find(|(n, _)| n == op).map(|(_, h)| h.len()).unwrap_or(0)
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn summary(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": (h.mean() / 10.0).round() / 100.0,
    })
}

/// CPU time (user + system) of a process from /proc/PID/stat (`self` for this one).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = match rustix::param::clock_ticks_per_second() {
        0 => 100,
        t => t,
    };
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

/// Resident set size in KiB from /proc/PID/status (`VmRSS`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process's command name from /proc/PID/comm (`boxoffice`, `nats-server`), or empty.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// CPU time and RSS of a set of processes over a phase, each apart and summed; a thread
/// samples the RSS peaks.
struct ProcessSet {
    pids: Vec<u32>,
    names: Vec<String>,
    cpu0: Vec<Duration>,
    rss0: Vec<u64>,
    /// One peak per pid, then the peak of their sum (sampled at the same moment, so it is
    /// not the sum of the peaks).
    peaks: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl ProcessSet {
    /// `None` without pids; an error if a pid is not a readable process.
    fn start(pids: &[u32]) -> anyhow::Result<Option<ProcessSet>> {
        if pids.is_empty() {
            return Ok(None);
        }
        let mut cpu0 = Vec::with_capacity(pids.len());
        let mut rss0 = Vec::with_capacity(pids.len());
        for &pid in pids {
            cpu0.push(cpu_time(Some(pid)).ok_or_else(|| anyhow::anyhow!("cannot read /proc/{pid}/stat"))?);
            rss0.push(rss_kb(pid).ok_or_else(|| anyhow::anyhow!("cannot read VmRSS of /proc/{pid}/status"))?);
        }
        let peaks: Arc<Vec<AtomicU64>> =
            Arc::new(rss0.iter().copied().chain([rss0.iter().sum()]).map(AtomicU64::new).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, watched) = (peaks.clone(), stop.clone(), pids.to_vec());
        let sampler = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let mut sum = 0;
                    for (i, &pid) in watched.iter().enumerate() {
                        let r = rss_kb(pid).unwrap_or(0);
                        p[i].fetch_max(r, Ordering::Relaxed);
                        sum += r;
                    }
                    p[watched.len()].fetch_max(sum, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .ok();
        let names = pids.iter().map(|&p| process_name(p)).collect();
        Ok(Some(ProcessSet { pids: pids.to_vec(), names, cpu0, rss0, peaks, stop, sampler }))
    }

    /// The summed RSS now, in KiB.
    fn rss_now(&self) -> u64 {
        self.pids.iter().map(|&p| rss_kb(p).unwrap_or(0)).sum()
    }

    /// The summed CPU time since the start.
    fn cpu_now(&self) -> Duration {
        self.pids.iter().zip(&self.cpu0).map(|(&p, &c0)| cpu_time(Some(p)).unwrap_or(c0).saturating_sub(c0)).sum()
    }

    fn finish(mut self) -> ServerUsage {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
        let processes: Vec<ProcessUsage> = self
            .pids
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                let cpu = cpu_time(Some(pid)).unwrap_or(self.cpu0[i]).saturating_sub(self.cpu0[i]);
                let after = rss_kb(pid).unwrap_or(0);
                ProcessUsage {
                    pid,
                    name: std::mem::take(&mut self.names[i]),
                    cpu,
                    rss_before_kb: self.rss0[i],
                    rss_after_kb: after,
                    rss_peak_kb: self.peaks[i].load(Ordering::Relaxed).max(after),
                }
            })
            .collect();
        let after: u64 = processes.iter().map(|p| p.rss_after_kb).sum();
        ServerUsage {
            cpu: processes.iter().map(|p| p.cpu).sum(),
            rss_before_kb: self.rss0.iter().sum(),
            rss_after_kb: after,
            rss_peak_kb: self.peaks[self.pids.len()].load(Ordering::Relaxed).max(after),
            processes,
        }
    }
}

/// One process's CPU time and RSS over a phase.
#[derive(Debug, Clone)]
pub struct ProcessUsage {
    pub pid: u32,
    /// Its command name (/proc/PID/comm), empty if it could not be read.
    pub name: String,
    pub cpu: Duration,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub rss_peak_kb: u64,
}

impl ProcessUsage {
    /// `pid 123 (boxoffice)`, or `pid 123` without a name.
    fn label(&self) -> String {
        if self.name.is_empty() {
            format!("pid {}", self.pid)
        } else {
            format!("pid {} ({})", self.pid, self.name)
        }
    }

    fn to_json(&self, wall: f64) -> Value {
        json!({
            "pid": self.pid,
            "name": self.name,
            "cpu_s": round3(self.cpu.as_secs_f64()),
            "cpu_pct": pct(self.cpu, wall),
            "rss_before_kb": self.rss_before_kb,
            "rss_after_kb": self.rss_after_kb,
            "rss_peak_kb": self.rss_peak_kb,
        })
    }
}

/// The server's processes (`--server-pid`, one or several: a core and its edges) over a
/// phase: their CPU time and RSS summed, and each one's.
#[derive(Debug, Clone)]
pub struct ServerUsage {
    /// Each process, in the order given; never empty.
    pub processes: Vec<ProcessUsage>,
    /// The sum of the processes' CPU time.
    pub cpu: Duration,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    /// The highest sampled sum of their RSS.
    pub rss_peak_kb: u64,
}

/// The server's processes (`--server-pid`, summed into the server's figures) and the
/// extra ones (`--extra-pid`, e.g. nats-server: each reported apart, in no sum) over a
/// phase.
pub struct ServerProbe {
    server: Option<ProcessSet>,
    extra: Option<ProcessSet>,
}

impl ServerProbe {
    /// Start measuring; an error if a pid is given twice or is not a readable process.
    pub fn start(server_pids: &[u32], extra_pids: &[u32]) -> anyhow::Result<ServerProbe> {
        let mut seen = std::collections::HashSet::new();
        if let Some(p) = server_pids.iter().chain(extra_pids).find(|&&p| !seen.insert(p)) {
            anyhow::bail!("pid {p} is given twice (--server-pid and --extra-pid each take a process once)");
        }
        Ok(ServerProbe { server: ProcessSet::start(server_pids)?, extra: ProcessSet::start(extra_pids)? })
    }

    /// The server's summed RSS now, in KiB, with `--server-pid`.
    pub fn rss_now(&self) -> Option<u64> {
        self.server.as_ref().map(ProcessSet::rss_now)
    }

    /// The server's summed CPU time since the start, with `--server-pid`.
    pub fn cpu_now(&self) -> Option<Duration> {
        self.server.as_ref().map(ProcessSet::cpu_now)
    }

    /// Stop measuring and put what was measured into `report`.
    pub fn finish(self, report: &mut Report) {
        report.server = self.server.map(ProcessSet::finish);
        report.extra = self.extra.map(|e| e.finish().processes).unwrap_or_default();
    }
}

/// The tool's own wall and CPU time over a phase.
pub struct ToolProbe {
    start: Instant,
    cpu0: Duration,
}

impl ToolProbe {
    pub fn start() -> ToolProbe {
        ToolProbe { start: Instant::now(), cpu0: cpu_time(None).unwrap_or_default() }
    }

    pub fn finish(&self) -> (Duration, Duration) {
        (self.start.elapsed(), cpu_time(None).unwrap_or_default().saturating_sub(self.cpu0))
    }
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn bar(enabled: bool, len: u64, prefix: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(8));
    let style =
        ProgressStyle::with_template("{prefix:>10} [{elapsed_precise}] {bar:30.cyan/blue} {pos:>7}/{len:7} {msg}")
            .expect("progress template")
            .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(prefix.to_string());
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// One invariant check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: impl Into<String>) -> Check {
        Check { name: name.to_string(), passed, detail: detail.into() }
    }
}

/// What a scenario reports.
pub struct Report {
    pub scenario: &'static str,
    pub params: Value,
    /// (key, value), in display order.
    pub figures: Vec<(String, Value)>,
    pub latencies: Latencies,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    /// The load phase's wall time and the tool's CPU time in it.
    pub wall: Duration,
    pub tool_cpu: Duration,
    /// From the tool's start to the end of the checks.
    pub total_wall: Duration,
    pub server: Option<ServerUsage>,
    /// `--extra-pid`: processes measured beside the server but not counted in it.
    pub extra: Vec<ProcessUsage>,
    /// More top-level entries of the JSON report (the soak's rounds), not in the tables.
    pub sections: Map<String, Value>,
}

impl Report {
    pub fn new(scenario: &'static str, params: Value) -> Report {
        Report {
            scenario,
            params,
            figures: Vec::new(),
            latencies: Latencies::default(),
            checks: Vec::new(),
            notes: Vec::new(),
            wall: Duration::ZERO,
            tool_cpu: Duration::ZERO,
            total_wall: Duration::ZERO,
            server: None,
            extra: Vec::new(),
            sections: Map::new(),
        }
    }

    pub fn fig(&mut self, key: &str, v: impl Into<Value>) {
        self.figures.push((key.to_string(), v.into()));
    }

    /// A rate or ratio, rounded to 2 decimals.
    pub fn fig_f(&mut self, key: &str, v: f64) {
        let v = if v.is_finite() { (v * 100.0).round() / 100.0 } else { 0.0 };
        self.fig(key, v);
    }

    pub fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check::new(name, passed, detail));
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// Server CPU microseconds per unit of work (`per_what` names it), when known.
    /// The store flushes between two `/healthz` readings, per `what`, and how many durable
    /// answers each flush released (group commit at work).
    pub fn flushes(&mut self, before: Option<(u64, u64)>, after: Option<(u64, u64)>, per_what: &str, n: u64) {
        if let (Some(b), Some(a)) = (before, after) {
            let (flushes, answers) = (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1));
            self.fig("store_flushes", flushes);
            self.fig_f(&format!("store_flushes_per_{per_what}"), flushes as f64 / n.max(1) as f64);
            self.fig_f("durable_answers_per_flush", answers as f64 / flushes.max(1) as f64);
        }
    }

    /// Server CPU microseconds per unit of work (`per_what` names it), summed over the
    /// server's processes; with `--extra-pid`, also with the extra processes added.
    pub fn server_cpu_per(&mut self, per_what: &str, n: u64) {
        if n == 0 {
            return;
        }
        let extra: Duration = self.extra.iter().map(|p| p.cpu).sum();
        if let Some(s) = &self.server {
            let server = s.cpu;
            self.fig_f(&format!("server_cpu_us_per_{per_what}"), server.as_micros() as f64 / n as f64);
            if !self.extra.is_empty() {
                let v = (server + extra).as_micros() as f64 / n as f64;
                self.fig_f(&format!("server_and_extra_cpu_us_per_{per_what}"), v);
            }
        }
        if !self.extra.is_empty() {
            self.fig_f(&format!("extra_cpu_us_per_{per_what}"), extra.as_micros() as f64 / n as f64);
        }
    }

    pub fn to_json(&self) -> Value {
        let mut figures = Map::new();
        for (k, v) in &self.figures {
            figures.insert(k.clone(), v.clone());
        }
        let mut lat = Map::new();
        for (op, h) in &self.latencies.ops {
            lat.insert(op.clone(), summary(h));
        }
        let wall = self.wall.as_secs_f64();
        let cpu = self.tool_cpu.as_secs_f64();
        let mut v = json!({
            "scenario": self.scenario,
            "passed": self.passed(),
            "params": self.params,
            "figures": figures,
            "latency_ms": lat,
            "checks": self.checks.iter().map(|c| json!({"name": c.name, "passed": c.passed, "detail": c.detail})).collect::<Vec<_>>(),
            "tool": {
                "wall_s": round3(wall),
                "cpu_s": round3(cpu),
                "cpu_pct": if wall > 0.0 { round3(100.0 * cpu / wall) } else { 0.0 },
                "total_wall_s": round3(self.total_wall.as_secs_f64()),
            },
            "server": self.server.as_ref().map(|s| {
                let mut v = json!({
                    "pids": s.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
                    "cpu_s": round3(s.cpu.as_secs_f64()),
                    "cpu_pct": pct(s.cpu, wall),
                    "rss_before_kb": s.rss_before_kb,
                    "rss_after_kb": s.rss_after_kb,
                    "rss_peak_kb": s.rss_peak_kb,
                    "processes": s.processes.iter().map(|p| p.to_json(wall)).collect::<Vec<_>>(),
                });
                // One pid: `pid` as before; several: only `pids`, the sums being no one pid's.
                if let [one] = s.processes.as_slice() {
                    v["pid"] = one.pid.into();
                }
                v
            }),
            "extra": self.extra.iter().map(|p| p.to_json(wall)).collect::<Vec<_>>(),
            "notes": self.notes,
        });
        if let Some(obj) = v.as_object_mut() {
            for (k, x) in &self.sections {
                obj.insert(k.clone(), x.clone());
            }
        }
        v
    }

    /// The summary tables.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_width(150);
        t.set_header(vec![Cell::new(format!("{} ", self.scenario)), Cell::new("value")]);
        for (k, v) in &self.figures {
            t.add_row(vec![Cell::new(k), Cell::new(show(v)).set_alignment(CellAlignment::Right)]);
        }
        let wall = self.wall.as_secs_f64();
        let cpu = self.tool_cpu.as_secs_f64();
        t.add_row(vec![
            Cell::new("load phase wall s"),
            Cell::new(format!("{wall:.2}")).set_alignment(CellAlignment::Right),
        ]);
        let tool_pct = if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 };
        t.add_row(vec![
            Cell::new("tool CPU s (% of one core)"),
            Cell::new(format!("{cpu:.2} ({tool_pct:.0}%)")).set_alignment(CellAlignment::Right),
        ]);
        let cpu_cell = |c: Duration| {
            Cell::new(format!("{:.2} ({:.0}%)", c.as_secs_f64(), pct(c, wall))).set_alignment(CellAlignment::Right)
        };
        let rss_cell = |before: u64, after: u64, peak: u64| {
            let mib = |kb: u64| kb as f64 / 1024.0;
            Cell::new(format!("{:.1} / {:.1} / {:.1}", mib(before), mib(after), mib(peak)))
                .set_alignment(CellAlignment::Right)
        };
        if let Some(s) = &self.server {
            if let [one] = s.processes.as_slice() {
                t.add_row(vec![Cell::new(format!("server CPU s (pid {})", one.pid)), cpu_cell(s.cpu)]);
                t.add_row(vec![
                    Cell::new("server RSS MiB before / after / peak"),
                    rss_cell(s.rss_before_kb, s.rss_after_kb, s.rss_peak_kb),
                ]);
            } else {
                let n = s.processes.len();
                t.add_row(vec![Cell::new(format!("server CPU s ({n} processes, summed)")), cpu_cell(s.cpu)]);
                for p in &s.processes {
                    t.add_row(vec![Cell::new(format!("  {} CPU s", p.label())), cpu_cell(p.cpu)]);
                }
                t.add_row(vec![
                    Cell::new(format!("server RSS MiB before / after / peak ({n} processes, summed)")),
                    rss_cell(s.rss_before_kb, s.rss_after_kb, s.rss_peak_kb),
                ]);
                for p in &s.processes {
                    t.add_row(vec![
                        Cell::new(format!("  {} RSS MiB", p.label())),
                        rss_cell(p.rss_before_kb, p.rss_after_kb, p.rss_peak_kb),
                    ]);
                }
            }
        }
        for p in &self.extra {
            t.add_row(vec![Cell::new(format!("extra CPU s, {} (not in the server's)", p.label())), cpu_cell(p.cpu)]);
            t.add_row(vec![
                Cell::new(format!("extra RSS MiB before / after / peak, {}", p.label())),
                rss_cell(p.rss_before_kb, p.rss_after_kb, p.rss_peak_kb),
            ]);
        }
        t.add_row(vec![
            Cell::new("total wall s (with setup and checks)"),
            Cell::new(format!("{:.2}", self.total_wall.as_secs_f64())).set_alignment(CellAlignment::Right),
        ]);
        out.push_str(&t.to_string());
        out.push('\n');

        if !self.latencies.ops.is_empty() {
            let mut t = Table::new();
            t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_width(150);
            t.set_header(vec!["latency (ms)", "count", "p50", "p99", "p99.9", "max"]);
            for (op, h) in &self.latencies.ops {
                let f = |us: u64| Cell::new(format!("{:.2}", ms(us))).set_alignment(CellAlignment::Right);
                t.add_row(vec![
                    Cell::new(op),
                    Cell::new(h.len()).set_alignment(CellAlignment::Right),
                    f(h.value_at_quantile(0.5)),
                    f(h.value_at_quantile(0.99)),
                    f(h.value_at_quantile(0.999)),
                    f(h.max()),
                ]);
            }
            out.push_str(&t.to_string());
            out.push('\n');
        }

        if !self.checks.is_empty() {
            let mut t = Table::new();
            t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_width(150);
            t.set_header(vec!["check", "result", "detail"]);
            for c in &self.checks {
                t.add_row(vec![
                    Cell::new(&c.name),
                    Cell::new(if c.passed { "PASS" } else { "FAIL" }),
                    Cell::new(&c.detail),
                ]);
            }
            out.push_str(&t.to_string());
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str("note: ");
            out.push_str(n);
            out.push('\n');
        }
        out.push_str(if self.passed() { "RESULT: PASS\n" } else { "RESULT: FAIL\n" });
        out
    }
}

/// `cpu` as a percentage of one core over `wall` seconds, to 3 decimals.
fn pct(cpu: Duration, wall: f64) -> f64 {
    if wall > 0.0 {
        round3(100.0 * cpu.as_secs_f64() / wall)
    } else {
        0.0
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_time(None).is_some());
        assert!(rss_kb(std::process::id()).unwrap_or(0) > 0);
    }

    #[test]
    fn several_server_pids_are_summed_and_extra_ones_kept_apart() {
        let (me, parent) = (std::process::id(), std::os::unix::process::parent_id());
        assert!(ServerProbe::start(&[me], &[me]).is_err());
        assert!(ServerProbe::start(&[me, me], &[]).is_err());
        let probe = ServerProbe::start(&[me, parent], &[]).expect("readable processes");
        assert!(probe.rss_now().unwrap_or(0) > 0);
        let mut r = Report::new("t", json!({}));
        r.wall = Duration::from_secs(1);
        probe.finish(&mut r);
        let s = r.server.as_ref().expect("server usage");
        assert_eq!(s.processes.len(), 2);
        assert_eq!(s.rss_before_kb, s.processes.iter().map(|p| p.rss_before_kb).sum::<u64>());
        assert!(s.rss_peak_kb >= s.rss_after_kb);
        let v = r.to_json();
        assert_eq!(v["server"]["pids"], json!([me, parent]));
        assert!(v["server"].get("pid").is_none(), "{v}");
        assert_eq!(v["server"]["processes"][0]["pid"], me);
        assert_eq!(v["extra"], json!([]));
        assert!(r.render().contains("2 processes, summed"));

        let probe = ServerProbe::start(&[me], &[parent]).expect("readable processes");
        let mut r = Report::new("t", json!({}));
        probe.finish(&mut r);
        r.server_cpu_per("op", 10);
        let v = r.to_json();
        assert_eq!(v["server"]["pid"], me);
        assert_eq!(v["extra"][0]["pid"], parent);
        assert!(v["figures"]["server_and_extra_cpu_us_per_op"].is_number(), "{v}");
        assert!(r.render().contains("not in the server's"));
    }

    #[test]
    fn latencies_merge_and_summarise() {
        let mut a = Latencies::default();
        a.record("x", Duration::from_millis(2));
        let mut h = histogram();
        h.saturating_record(4000);
        a.merge("x", &h);
        assert_eq!(a.count("x"), 2);
        let mut r = Report::new("t", json!({}));
        r.latencies = a;
        r.check("ok", true, "");
        let v = r.to_json();
        assert_eq!(v["latency_ms"]["x"]["count"], 2);
        assert!(v["latency_ms"]["x"]["max"].as_f64().unwrap_or(0.0) >= 3.9);
        assert_eq!(v["passed"], true);
        assert!(r.render().contains("RESULT: PASS"));
    }
}
