//! One load connection: its outgoing bytes, the messages awaiting their
//! echo (intended and actual send times), and the verification cursor.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;

use super::payload;

pub struct Conn {
    pub id: u32,
    pub sock: TcpStream,
    tx: Vec<u8>,
    tx_pos: usize,
    pub writable: bool,
    /// Intended and actual send times (ns since the run's start) of
    /// messages not yet fully echoed, oldest first.
    pending: VecDeque<(u64, u64)>,
    next_seq: u64,
    rx_seq: u64,
    rx_off: usize,
}

/// What reading produced.
pub enum ReadOutcome {
    /// Keep going; `done` messages completed (their intended times were
    /// passed to the callback).
    Open,
    /// The server closed the connection.
    Closed,
}

impl Conn {
    pub fn new(id: u32, sock: TcpStream, size: usize, depth: usize) -> Conn {
        Conn {
            id,
            sock,
            tx: Vec::with_capacity(size * depth.max(1)),
            tx_pos: 0,
            writable: true,
            pending: VecDeque::with_capacity(depth.max(16)),
            next_seq: 0,
            rx_seq: 0,
            rx_off: 0,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Intended send times of the messages still unanswered.
    pub fn pending_intended(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.pending.iter().copied()
    }

    /// Queues the next message, intended at `intended_ns` and issued (its
    /// write follows at once unless the socket is full) at `sent_ns`.
    pub fn enqueue(&mut self, size: usize, intended_ns: u64, sent_ns: u64) {
        payload::append(&mut self.tx, self.id, self.next_seq, size);
        self.next_seq += 1;
        self.pending.push_back((intended_ns, sent_ns));
    }

    /// Writes queued bytes until done or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.writable && self.tx_pos < self.tx.len() {
            match (&self.sock).write(&self.tx[self.tx_pos..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "server stopped reading",
                    ))
                }
                Ok(n) => self.tx_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.tx_pos == self.tx.len() {
            self.tx.clear();
            self.tx_pos = 0;
        }
        Ok(())
    }

    /// Reads everything available, verifying each byte; calls `done` with
    /// the intended and actual send times of each completed message.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        size: usize,
        mut done: impl FnMut(u64, u64),
    ) -> io::Result<ReadOutcome> {
        loop {
            let n = match (&self.sock).read(buf) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut at = 0;
            while at < n {
                if self.pending.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("connection {}: received bytes nobody sent", self.id),
                    ));
                }
                let take = (size - self.rx_off).min(n - at);
                for (k, &b) in buf[at..at + take].iter().enumerate() {
                    let want = payload::byte(self.id, self.rx_seq, self.rx_off + k);
                    if b != want {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "echo mismatch on connection {} message {} byte {}: sent {want:#04x}, got {b:#04x}",
                                self.id,
                                self.rx_seq,
                                self.rx_off + k
                            ),
                        ));
                    }
                }
                at += take;
                self.rx_off += take;
                if self.rx_off == size {
                    self.rx_off = 0;
                    self.rx_seq += 1;
                    let (intended, sent) = self.pending.pop_front().expect("checked non-empty");
                    done(intended, sent);
                }
            }
            // A short read drained the socket: with edge-triggered epoll the
            // next arrival raises a new event, so skip the read that would
            // only return EAGAIN (one syscall less per message).
            if n < buf.len() {
                return Ok(ReadOutcome::Open);
            }
        }
    }
}
