//! `bench-harness agent`: the server host's half of a two-host run.
//!
//! When the server and the load generator are on different machines, the
//! generator cannot read the server's CPU time from `/proc`. The agent runs
//! on the server's host and answers one request per line over TCP:
//!
//! ```text
//! sample PID CORES      (CORES: comma-separated, or "all")
//! ok PROC_CPU_NS CORE_BUSY_NS CORE_STEAL_NS
//! ```
//!
//! or `error MESSAGE`. The figures are the same window-edge sample that
//! `compare` takes locally ([`WindowSample`]): the process's CPU clock
//! (every thread, exited ones included) and the listed cores' busy and
//! steal time from `/proc/stat`. `load --agent ADDR --server-pid PID`
//! takes one at each edge of its measurement window.
//!
//! The agent only reads CPU counters; it never starts, stops or signals
//! anything. Still, bind it to an address only the generator can reach.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::compare::process::WindowSample;

/// Serves requests on `listener` until the process is killed; one thread
/// per connection (a generator keeps one open for its whole run).
pub fn serve(listener: TcpListener) -> io::Result<()> {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            // A peer that gave up before the accept, or a full fd table:
            // keep serving the others.
            Err(_) => continue,
        };
        std::thread::spawn(move || {
            let _ = answer(conn);
        });
    }
    Ok(())
}

fn answer(conn: TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut out = conn.try_clone()?;
    for line in BufReader::new(conn).lines() {
        let reply = match parse(&line?) {
            Ok((pid, cores)) => match sample_here(pid, &cores) {
                Ok(s) => format!(
                    "ok {} {} {}\n",
                    s.proc_cpu_ns, s.core_busy_ns, s.core_steal_ns
                ),
                Err(e) => format!("error {e}\n"),
            },
            Err(e) => format!("error {e}\n"),
        };
        out.write_all(reply.as_bytes())?;
    }
    Ok(())
}

/// `sample PID CORES` → the pid and the cores (empty: all of them).
fn parse(line: &str) -> Result<(u32, Vec<usize>), String> {
    let mut f = line.split_whitespace();
    let (Some("sample"), Some(pid), Some(cores), None) = (f.next(), f.next(), f.next(), f.next())
    else {
        return Err(format!(
            "cannot read {line:?}: expected `sample PID CORES` (CORES: 0,1 or all)"
        ));
    };
    let pid = pid
        .parse()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    let cores = if cores == "all" {
        Vec::new()
    } else {
        cores
            .split(',')
            .map(|c| c.parse().map_err(|_| format!("{c:?} is not a core number")))
            .collect::<Result<_, _>>()?
    };
    Ok((pid, cores))
}

/// A sample of `pid` and `cores` (empty: all) on this host: what the
/// agent answers, and what `load --server-pid` takes without an agent.
pub fn sample_here(pid: u32, cores: &[usize]) -> Result<WindowSample, String> {
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(format!("no process {pid} on this host"));
    }
    let all: Vec<usize>;
    let cores = if cores.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        all = (0..n).collect();
        &all
    } else {
        cores
    };
    let s = WindowSample::read(pid, cores);
    if s.proc_cpu_ns == 0 {
        return Err(format!(
            "cannot read the CPU clock of process {pid} (is it another user's? run the agent as that user or root)"
        ));
    }
    Ok(s)
}

/// The generator's side: one connection to an agent.
#[derive(Debug)]
pub struct AgentClient {
    addr: String,
    out: TcpStream,
    input: BufReader<TcpStream>,
}

impl AgentClient {
    /// Connects (5 s at most) and checks at once that the agent can sample
    /// `pid`, so a wrong address or pid fails before any load is sent.
    pub fn connect(addr: &str, pid: u32, cores: &[usize]) -> io::Result<AgentClient> {
        let err = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("agent {addr}: {e} (is `bench-harness agent` running there?)"),
            )
        };
        let target: SocketAddr = addr
            .to_socket_addrs()
            .map_err(err)?
            .next()
            .ok_or_else(|| err(io::Error::other("the name has no address")))?;
        let out = TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(err)?;
        out.set_nodelay(true)?;
        out.set_read_timeout(Some(Duration::from_secs(5)))?;
        let input = BufReader::new(out.try_clone()?);
        let mut c = AgentClient {
            addr: addr.to_string(),
            out,
            input,
        };
        c.sample(pid, cores)?;
        Ok(c)
    }

    /// One sample of `pid` and `cores` (empty: all) on the agent's host,
    /// stamped with the local time of the reply.
    pub fn sample(&mut self, pid: u32, cores: &[usize]) -> io::Result<WindowSample> {
        let cores = if cores.is_empty() {
            "all".to_string()
        } else {
            cores
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        writeln!(self.out, "sample {pid} {cores}")?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("agent {} closed the connection", self.addr),
            ));
        }
        let at = Some(std::time::Instant::now());
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "agent {}: unexpected reply {:?}",
                    self.addr,
                    line.trim_end()
                ),
            )
        };
        let mut f = line.split_whitespace();
        match f.next() {
            Some("ok") => {
                let mut n =
                    || -> io::Result<u64> { f.next().and_then(|v| v.parse().ok()).ok_or_else(bad) };
                Ok(WindowSample {
                    at,
                    proc_cpu_ns: n()?,
                    core_busy_ns: n()?,
                    core_steal_ns: n()?,
                })
            }
            Some("error") => Err(io::Error::other(format!(
                "agent {}: {}",
                self.addr,
                line.trim_end().trim_start_matches("error ")
            ))),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_or_refused_with_the_reason() {
        assert_eq!(parse("sample 12 0,1"), Ok((12, vec![0, 1])));
        assert_eq!(parse("sample 12 all"), Ok((12, vec![])));
        assert!(parse("sample x all").unwrap_err().contains("process id"));
        assert!(parse("sample 1 0,y").unwrap_err().contains("core number"));
        assert!(parse("sample 1").unwrap_err().contains("expected"));
        assert!(parse("stop 1 all").unwrap_err().contains("expected"));
    }
}
