//! Per-core sharded state with cross-core messages.
//!
//! Each worker owns a shard of a key → count map in a plain `RefCell`
//! (no lock, no atomic: only its own worker touches it). A key belongs to
//! shard `hash(key) % workers`; a task that wants to count a key sends a
//! message to the owning shard's mailbox (`percore::sync::mpsc`), and gets
//! the new count back on a reply channel. This is the shard-per-core
//! pattern: data stays on one core, work moves to the data.
//!
//!     cargo run --release -p percore --example sharded_counter

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use percore::sync::mpsc;

/// A request to a shard: add one to `key`, reply with the new count.
struct Incr {
    key: String,
    reply: mpsc::Sender<u64>,
}

fn shard_of(key: &str, shards: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

fn main() -> std::io::Result<()> {
    let rt = percore::Runtime::new()?;
    let shards = rt.workers().len();
    let handle = rt.handle();
    // One mailbox per worker; the shard's task owns its map.
    let mut mailboxes = Vec::new();
    let mut owners = Vec::new();
    for i in 0..shards {
        let (tx, mut rx) = mpsc::channel::<Incr>(1024);
        mailboxes.push(tx);
        owners.push(handle.spawn_local_on(i, move || async move {
            let map: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
            while let Some(Incr { key, reply }) = rx.recv().await {
                let n = {
                    let mut m = map.borrow_mut();
                    let n = m.entry(key).or_insert(0);
                    *n += 1;
                    *n
                };
                let _ = reply.send(n).await;
            }
            // The map never left this worker.
            (percore::worker_index(), map.into_inner().len())
        }));
    }
    let words = [
        "apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu",
    ];
    rt.block_on(async move {
        let mut clients = Vec::new();
        for c in 0..16usize {
            let mailboxes = mailboxes.clone();
            clients.push(percore::spawn(async move {
                let (reply, mut replies) = mpsc::channel(1);
                let mut last = 0;
                for i in 0..100 {
                    let key = words[(c + i) % words.len()].to_string();
                    let shard = shard_of(&key, mailboxes.len());
                    let msg = Incr {
                        key,
                        reply: reply.clone(),
                    };
                    if mailboxes[shard].send(msg).await.is_err() {
                        panic!("shard {shard} is gone");
                    }
                    last = replies.recv().await.expect("a reply");
                }
                last
            }));
        }
        for c in clients {
            c.await.expect("client");
        }
        // Closing the mailboxes ends the shards.
        drop(mailboxes);
    });
    let mut keys = 0;
    for o in owners {
        let (worker, n) = rt.block_on(o).expect("shard task");
        println!("shard on worker {worker:?}: {n} keys");
        keys += n;
    }
    assert_eq!(keys, words.len());
    println!("sharded_counter: 1600 increments over {shards} shards, {keys} keys in all");
    Ok(())
}
