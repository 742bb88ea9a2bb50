//! Copies a file with positional reads and writes, several chunks in
//! flight at once (native io_uring file ops; the blocking pool on epoll).
//!
//!     cargo run --release -p percore --example file_copy -- SRC DST
//!
//! Without arguments it copies a generated 8 MiB temporary file, checks
//! the copy byte for byte, and removes both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use percore::fs::{File, OpenOptions};

const CHUNK: usize = 256 * 1024;
const IN_FLIGHT: u64 = 4;

async fn copy(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let from = Arc::new(File::open(src).await?);
    let len = from.metadata().await?.len();
    let to = Arc::new(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dst)
            .await?,
    );
    // IN_FLIGHT tasks, each copying every IN_FLIGHT-th chunk.
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|k| {
            let (from, to) = (from.clone(), to.clone());
            percore::spawn(async move {
                let mut buf = Vec::with_capacity(CHUNK);
                let mut pos = k * CHUNK as u64;
                while pos < len {
                    buf.clear();
                    let (res, b) = from.read_at(buf, pos).await;
                    let n = res?;
                    if n == 0 {
                        break; // the source shrank
                    }
                    let (res, b) = to.write_all_at(b, pos).await;
                    res?;
                    buf = b;
                    pos += IN_FLIGHT * CHUNK as u64;
                }
                Ok::<(), std::io::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("copy task")?;
    }
    to.sync_all().await?;
    Ok(len)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = percore::Runtime::new()?;
    match args.as_slice() {
        [src, dst] => {
            let (src, dst) = (PathBuf::from(src), PathBuf::from(dst));
            let n = rt.block_on(async move { copy(&src, &dst).await })?;
            println!("file_copy: {n} bytes");
            Ok(())
        }
        [] => {
            let dir = std::env::temp_dir();
            let src = dir.join(format!("percore-copy-src-{}", std::process::id()));
            let dst = dir.join(format!("percore-copy-dst-{}", std::process::id()));
            let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
            let n = rt.block_on(async move {
                percore::fs::write(&src, &data).await?;
                let n = copy(&src, &dst).await?;
                let back = percore::fs::read(&dst).await?;
                assert!(back == data, "the copy differs from the source");
                percore::fs::remove_file(&src).await?;
                percore::fs::remove_file(&dst).await?;
                Ok::<u64, std::io::Error>(n)
            })?;
            println!("file_copy demo: {n} bytes copied and checked");
            Ok(())
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: file_copy SRC DST (or no arguments for a self-checking demo)",
        )),
    }
}
