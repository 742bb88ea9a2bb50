//! Server child processes: start one pinned to a CPU set, wait until it
//! listens, sample its CPU, memory and context switches from `/proc`, stop
//! it by pid.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How to start one server implementation.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// How to tell it is ready.
    pub ready: Ready,
}

/// How a started server says it is ready.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// It prints `listening on ADDR` as its first stdout line.
    Announces,
    /// It was told to listen on this port of 127.0.0.1: ready once a
    /// connection there succeeds.
    Port(u16),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    /// The first lines it wrote on stderr (its start-up lines: driver,
    /// ring flags, cores); the rest of its stderr is read and dropped, so
    /// a chatty server never blocks on a full pipe.
    stderr_head: Arc<Mutex<Vec<String>>>,
    /// Stalls reported in percore-echo's exit counters, once it printed
    /// them (`runtime counters, worker N: ..., K stalls`), summed.
    stalls: Arc<Mutex<Option<u64>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Reaped with `wait4` (std's `Child` does not know): never signal or
    /// wait on its pid again, which may now be another process's.
    reaped: bool,
    /// Its thread count once ready (before any connection).
    ready_threads: u64,
}

/// Stderr lines kept per server, and their length limit.
const STDERR_LINES: usize = 20;
const STDERR_LINE_CHARS: usize = 300;

impl Server {
    /// Starts `spec` with its CPU affinity restricted to `cores` (empty: all)
    /// and waits up to 10 s for its `listening on ADDR` line.
    pub fn start(spec: &ServerSpec, cores: &[usize]) -> io::Result<Server> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let cores = cores.to_vec();
        // SAFETY: between fork and exec only prctl and sched_setaffinity
        // run, plain syscalls (async-signal-safe); the set lives on the
        // stack. PR_SET_PDEATHSIG: the server dies with the harness (an
        // error, a panic, Ctrl-C, a kill), never left behind holding a core.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if cores.is_empty() {
                    return Ok(());
                }
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for &c in &cores {
                    libc::CPU_SET(c, &mut set);
                }
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("start {} ({}): {e}", spec.name, spec.program.display()),
            )
        })?;
        let stderr_head = Arc::new(Mutex::new(Vec::new()));
        let stalls = Arc::new(Mutex::new(None));
        let mut reader = None;
        if let Some(err) = child.stderr.take() {
            let head = stderr_head.clone();
            let stall_sum = stalls.clone();
            // Reads to EOF whatever comes (bytes, not UTF-8; a line of any
            // length), so the server never meets a closed or full pipe.
            reader = Some(std::thread::spawn(move || {
                let mut r = BufReader::new(err);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match r.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if let Some(n) = counter_stalls(&String::from_utf8_lossy(&line)) {
                        let mut s = stall_sum.lock().unwrap_or_else(|e| e.into_inner());
                        *s = Some(s.unwrap_or(0) + n);
                    }
                    let mut h = head.lock().unwrap_or_else(|e| e.into_inner());
                    if h.len() < STDERR_LINES {
                        let text = String::from_utf8_lossy(&line);
                        h.push(text.trim_end().chars().take(STDERR_LINE_CHARS).collect());
                    }
                }
            }));
        }
        let addr = match spec.ready {
            Ready::Announces => wait_for_announce(spec, &mut child)?,
            Ready::Port(port) => wait_for_port(spec, &mut child, port)?,
        };
        let ready_threads = thread_count(child.id());
        Ok(Server {
            name: spec.name.clone(),
            addr,
            child,
            stderr_head,
            stalls,
            reader,
            reaped: false,
            ready_threads,
        })
    }

    /// What the server has written on stderr so far (its first lines).
    pub fn startup_lines(&self) -> Vec<String> {
        self.stderr_head
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to `limit`) while the server's thread count is falling
    /// toward what it had when it became ready: the connections of the run
    /// that just ended are being torn down (a thread-per-connection server
    /// ends one thread each). Returns at once for servers at or below that
    /// count, and after 100 ms without a change for ones that keep extra
    /// threads (a blocking pool's idle threads).
    pub fn settle(&self, limit: Duration) {
        let start = std::time::Instant::now();
        let mut last = thread_count(self.pid());
        let mut still_since = start;
        while last > self.ready_threads && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(10));
            let now = thread_count(self.pid());
            if now < last {
                still_since = std::time::Instant::now();
            } else if still_since.elapsed() >= Duration::from_millis(100) {
                return;
            }
            last = now;
        }
    }

    pub fn sample(&self) -> io::Result<ProcSample> {
        ProcSample::read(self.pid())
    }

    /// Stops the server (SIGKILL: a benchmark server has nothing to save);
    /// returns its whole-life usage.
    pub fn stop(mut self) -> Option<ExitUsage> {
        let _ = self.child.kill();
        self.reaped = true;
        reap(&mut self.child)
    }

    /// Stops the server with SIGTERM so it prints its exit counters (up to
    /// 15 s, then SIGKILL); returns the stalls they report and its
    /// whole-life usage.
    pub fn stop_for_counters(mut self) -> (Option<u64>, Option<ExitUsage>) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let usage = loop {
            if let Some(u) = try_reap(&mut self.child) {
                break u;
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                break reap(&mut self.child);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.reaped = true;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stalls = *self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        (stalls, usage)
    }
}

/// What the kernel reports for a server process over its whole life when
/// it is reaped (`wait4`'s rusage): threads that exited during the run
/// (per-connection threads do) are included, which per-thread `/proc`
/// samples miss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitUsage {
    pub user_s: f64,
    pub sys_s: f64,
    pub voluntary_cs: u64,
    pub involuntary_cs: u64,
    /// Peak resident set, KiB.
    pub max_rss_kb: u64,
}

impl ExitUsage {
    fn of(ru: &libc::rusage) -> ExitUsage {
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        ExitUsage {
            user_s: secs(ru.ru_utime),
            sys_s: secs(ru.ru_stime),
            voluntary_cs: ru.ru_nvcsw as u64,
            involuntary_cs: ru.ru_nivcsw as u64,
            max_rss_kb: ru.ru_maxrss as u64,
        }
    }
}

/// `wait4` on the child: `Some(usage)` once reaped (`Some(None)` if the
/// call failed), `None` while it still runs (`nohang`).
fn wait4(child: &Child, nohang: bool) -> Option<Option<ExitUsage>> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: out-pointers to live locals; the pid is our own child,
        // not yet reaped (std's `Child` is never waited on after this).
        let r = unsafe { libc::wait4(child.id() as i32, &mut status, flags, &mut ru) };
        match r {
            0 => return None,
            r if r > 0 => return Some(Some(ExitUsage::of(&ru))),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return Some(None),
        }
    }
}

fn try_reap(child: &mut Child) -> Option<Option<ExitUsage>> {
    wait4(child, true)
}

fn reap(child: &mut Child) -> Option<ExitUsage> {
    wait4(child, false).flatten()
}

/// The `K stalls` of a percore-echo exit counters line, if this is one.
fn counter_stalls(line: &str) -> Option<u64> {
    if !line.contains("runtime counters") {
        return None;
    }
    let (before, _) = line.split_once(" stalls")?;
    before.rsplit(' ').next()?.parse().ok()
}

/// Waits up to 10 s for `listening on ADDR` on the child's stdout.
fn wait_for_announce(spec: &ServerSpec, child: &mut Child) -> io::Result<SocketAddr> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not report `listening on` within 10 s", spec.name),
            ));
        }
    };
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok());
    let Some(addr) = addr else {
        let _ = child.kill();
        let status = child.wait()?;
        return Err(io::Error::other(format!(
            "{} exited ({status}) or printed {line:?} instead of `listening on ADDR`",
            spec.name
        )));
    };
    Ok(addr)
}

/// Waits up to 10 s until a connection to 127.0.0.1:`port` succeeds (a
/// server that does not announce itself), failing early if it exits.
fn wait_for_port(spec: &ServerSpec, child: &mut Child, port: u16) -> io::Result<SocketAddr> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(addr);
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "{} exited ({status}) before listening on {addr}",
                spec.name
            )));
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} did not accept connections on {addr} within 10 s",
                    spec.name
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Cumulative counters of a process, summed over its threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    pub user_s: f64,
    pub sys_s: f64,
    pub voluntary_cs: u64,
    pub involuntary_cs: u64,
    pub rss_kb: u64,
    pub peak_rss_kb: u64,
}

impl ProcSample {
    pub fn read(pid: u32) -> io::Result<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised command name (which may hold spaces).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // SAFETY: sysconf with a constant name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // After ')': state is field 3 of stat(5), so utime (14) is index 11.
        let mut s = ProcSample {
            user_s: ticks(11) / hz,
            sys_s: ticks(12) / hz,
            ..ProcSample::default()
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        s.rss_kb = kb_field(&status, "VmRSS:");
        s.peak_rss_kb = kb_field(&status, "VmHWM:");
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(st) = std::fs::read_to_string(t.path().join("status")) {
                    s.voluntary_cs += kb_field(&st, "voluntary_ctxt_switches:");
                    s.involuntary_cs += kb_field(&st, "nonvoluntary_ctxt_switches:");
                }
            }
        }
        Ok(s)
    }
}

/// What is sampled at the measurement window's edges: the server's CPU
/// time in ns (`/proc/<pid>/task/*/schedstat`, threads alive at that
/// moment) and, for the server's cores, the whole core's busy and steal
/// time (`/proc/stat`: on loopback the sender's context runs the
/// receiver's softirq, so per-process CPU misses part of the server's
/// work; a VM's steal says how much the host took).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSample {
    pub at: Option<std::time::Instant>,
    pub proc_cpu_ns: u64,
    /// Busy (user + nice + system + irq + softirq) and steal, in ns, summed
    /// over the sampled cores.
    pub core_busy_ns: u64,
    pub core_steal_ns: u64,
}

impl WindowSample {
    pub fn read(pid: u32, cores: &[usize]) -> WindowSample {
        let mut s = WindowSample {
            at: Some(std::time::Instant::now()),
            ..WindowSample::default()
        };
        s.proc_cpu_ns = process_cpu_ns(pid);
        // SAFETY: sysconf with a constant name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let to_ns = |ticks: u64| ticks * (1_000_000_000 / hz);
        if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
            for line in stat.lines() {
                let mut f = line.split_whitespace();
                let Some(cpu) = f.next().and_then(|c| c.strip_prefix("cpu")) else {
                    continue;
                };
                let Ok(n) = cpu.parse::<usize>() else {
                    continue; // the "cpu" total line
                };
                if !cores.contains(&n) {
                    continue;
                }
                let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
                let get = |i: usize| v.get(i).copied().unwrap_or(0);
                // user nice system idle iowait irq softirq steal
                s.core_busy_ns += to_ns(get(0) + get(1) + get(2) + get(5) + get(6));
                s.core_steal_ns += to_ns(get(7));
            }
        }
        s
    }
}

/// The process's CPU time in ns, all threads including those that already
/// exited: its CPU-time clock (`clock_getcpuclockid` + `clock_gettime`),
/// one syscall however many threads it has. (Summing
/// `/proc/PID/task/*/schedstat` instead lost exited threads and, against a
/// thread-per-connection server, stalled the generator thread that samples
/// the window's edges for as long as 10,000 file reads take.) 0 if the clock
/// cannot be read.
pub fn process_cpu_ns(pid: u32) -> u64 {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: out-pointer to a live local.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return 0;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: out-pointer to a live local; the clock id came from the call above.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Threads the process has now (`Threads:` in `/proc/PID/status`).
pub fn thread_count(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| kb_field(&s, "Threads:"))
        .unwrap_or(0)
}

/// Resets the process's peak RSS (VmHWM) to its current RSS, so that the
/// next run's peak is its own (`/proc/PID/clear_refs`, value 5). False if
/// the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn kb_field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_samples_read_schedstat_and_the_cores() {
        // Other test threads of this process may exit between the two
        // samples (their time then leaves the per-thread sum), so only the
        // readings themselves and the cores' monotonic counters are checked.
        let a = WindowSample::read(std::process::id(), &[0]);
        let x: u64 = (0..2_000_000u64).map(|i| i ^ (i >> 3)).sum();
        assert!(x > 0);
        let b = WindowSample::read(std::process::id(), &[0]);
        assert!(a.proc_cpu_ns > 0 && b.proc_cpu_ns > 0, "{a:?} {b:?}");
        assert!(
            b.core_busy_ns >= a.core_busy_ns && a.core_busy_ns > 0,
            "{a:?} {b:?}"
        );
    }

    #[test]
    fn process_cpu_counts_threads_that_exited() {
        let before = process_cpu_ns(std::process::id());
        // A thread that burns ~30 ms of CPU and exits.
        std::thread::spawn(|| {
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(30) {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
        })
        .join()
        .unwrap();
        let after = process_cpu_ns(std::process::id());
        assert!(before > 0);
        assert!(
            after - before >= 20_000_000,
            "the exited thread's CPU is in the process clock: {} ns",
            after - before
        );
    }

    #[test]
    fn samples_this_process() {
        let s = ProcSample::read(std::process::id()).unwrap();
        assert!(s.rss_kb > 0 && s.peak_rss_kb >= s.rss_kb, "{s:?}");
        assert!(s.voluntary_cs + s.involuntary_cs > 0, "{s:?}");
    }
}
