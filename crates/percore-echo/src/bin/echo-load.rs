//! echo-load: a simple closed-loop load client for echo servers, itself on
//! percore. Each connection sends one message, reads the whole echo back,
//! verifies every byte, and repeats until the duration ends. Reports
//! messages per second. (The open-loop, latency-grade generator is
//! `bench-harness load`.)

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use percore::net::TcpStream;
use percore::{IoBuf, Runtime};

#[derive(Debug, Parser)]
#[command(name = "echo-load", version)]
struct Args {
    /// Echo server address (loopback).
    #[arg(long)]
    addr: SocketAddr,
    /// Concurrent connections.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    conns: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    size: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Client worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> io::Result<()> {
    if !args.addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a loopback address; echo-load only targets this machine",
                args.addr
            ),
        ));
    }
    let rt = Runtime::builder().workers(args.workers.max(1)).build()?;
    let duration = Duration::from_secs_f64(args.duration.clamp(0.1, 3600.0));
    let (addr, size, conns) = (args.addr, args.size as usize, args.conns);
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = (0..conns)
        .map(|c| rt.spawn(connection(addr, c, size, deadline)))
        .collect();
    let mut total = 0u64;
    for h in handles {
        total += rt.block_on(h).map_err(io::Error::other)??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "echo-load: {conns} conns x {size} B, {secs:.1} s: {total} messages verified, {:.0} msg/s, {:.1} MB/s each way",
        total as f64 / secs,
        total as f64 * size as f64 / secs / 1e6
    );
    Ok(())
}

/// One connection's loop; returns the messages echoed and verified.
async fn connection(addr: SocketAddr, id: u32, size: usize, deadline: Instant) -> io::Result<u64> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut out = vec![0u8; size];
    let mut back = Vec::with_capacity(size);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for (i, b) in out.iter_mut().enumerate() {
            *b = (id as usize)
                .wrapping_mul(31)
                .wrapping_add(i)
                .wrapping_add(n as usize) as u8;
        }
        let (res, o) = stream.write_all(out).await;
        out = o;
        res?;
        back.clear();
        while back.len() < size {
            // Read into the unfilled tail: the window starts at len.
            let filled = back.len();
            let (res, b) = stream.read(back.slice(filled..)).await;
            back = b.into_inner();
            if res? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection mid-message",
                ));
            }
        }
        if back != out {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "echoed bytes differ from the bytes sent",
            ));
        }
        n += 1;
    }
    Ok(n)
}
