//! `percore::fs` on the driver under test (native ring ops on io_uring,
//! the blocking pool on epoll): positional reads and writes, reads past
//! the end, concurrent writes at distinct offsets, open options and their
//! errors, metadata, whole-file helpers, directories, sync, cancellation,
//! and a full blocking pool.

mod common;

use std::io::ErrorKind;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use percore::fs::{self, File, OpenOptions};
use percore::time::timeout;
use percore::{Driver, Runtime};

#[test]
fn positional_writes_and_reads_round_trip_and_stop_at_the_end() {
    let _w = watchdog("fs_rw", 30);
    let dir = temp_dir("fs-rw");
    let path = dir.join("f");
    runtime(1, 64).block_on(async move {
        let f = File::create(&path).await.unwrap();
        f.write_all_at(b"0123456789".to_vec(), 0).await.0.unwrap();
        f.write_all_at(b"ab".to_vec(), 4).await.0.unwrap();
        let (res, _) = f.read_at(vec![0u8; 32], 0).await;
        let e = res.unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EBADF),
            "create opens write-only"
        );
        drop(f);
        let f = File::open(&path).await.unwrap();
        let (res, buf) = f.read_at(Vec::with_capacity(32), 0).await;
        assert_eq!(res.unwrap(), 10);
        assert_eq!(buf, b"0123ab6789");
        let (res, buf) = f.read_at(Vec::with_capacity(4), 8).await;
        assert_eq!((res.unwrap(), &buf[..]), (2, &b"89"[..]));
        let (res, _) = f.read_at(Vec::with_capacity(4), 10).await;
        assert_eq!(res.unwrap(), 0, "at the end");
        let (res, _) = f.read_at(Vec::with_capacity(4), 1 << 40).await;
        assert_eq!(res.unwrap(), 0, "far past the end");
        let (res, buf) = f.read_exact_at(vec![0u8; 8], 6).await;
        let e = res.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("4 of 8"), "{e}");
        assert_eq!(&buf[..4], b"6789");
        let (res, buf) = f.read_exact_at(vec![0u8; 3], 1).await;
        res.unwrap();
        assert_eq!(buf, b"123");
        // io_uring would read u64::MAX as "the current position": refused.
        for pos in [u64::MAX, i64::MAX as u64 + 1] {
            let (res, _) = f.read_at(Vec::with_capacity(4), pos).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    });
}

#[test]
fn concurrent_writes_at_distinct_offsets_all_land() {
    let _w = watchdog("fs_concurrent", 60);
    let dir = temp_dir("fs-concurrent");
    let path = dir.join("f");
    const CHUNK: usize = 4096;
    const N: usize = 64;
    runtime(2, 64).block_on(async move {
        let f = std::sync::Arc::new(File::create(&path).await.unwrap());
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let f = f.clone();
                percore::spawn(async move {
                    let (res, _) = f
                        .write_all_at(vec![i as u8; CHUNK], (i * CHUNK) as u64)
                        .await;
                    res.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        f.sync_all().await.unwrap();
        let data = fs::read(&path).await.unwrap();
        assert_eq!(data.len(), N * CHUNK);
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            assert!(chunk.iter().all(|&b| b == i as u8), "chunk {i}");
        }
    });
}

#[test]
fn open_options_behave_as_std_and_errors_name_the_path() {
    let _w = watchdog("fs_open", 30);
    let dir = temp_dir("fs-open");
    runtime(1, 64).block_on(async move {
        let missing = dir.join("missing");
        let e = File::open(&missing).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "{e}");

        let path = dir.join("f");
        fs::write(&path, "first").await.unwrap();
        let e = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let e = OpenOptions::new().open(&path).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("neither read"), "{e}");
        let e = OpenOptions::new()
            .read(true)
            .create(true)
            .open(&path)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = File::open(dir.join("nul\0inside")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);

        // Append: every write lands at the end, whatever offset it names.
        let a = OpenOptions::new().append(true).open(&path).await.unwrap();
        a.write_all_at(b"+second".to_vec(), 0).await.0.unwrap();
        drop(a);
        assert_eq!(fs::read(&path).await.unwrap(), b"first+second");
        // Truncate on create; mode on a new file.
        let t = File::create(&path).await.unwrap();
        assert_eq!(t.metadata().await.unwrap().len(), 0);
        let private = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("private"))
            .await
            .unwrap();
        assert_eq!(private.metadata().await.unwrap().mode() & 0o777, 0o600);
    });
}

#[test]
fn metadata_whole_files_and_directories() {
    let _w = watchdog("fs_meta", 30);
    let dir = temp_dir("fs-meta");
    runtime(1, 64).block_on(async move {
        let big: Vec<u8> = (0..(1 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
        let path = dir.join("big");
        fs::write(&path, &big).await.unwrap();
        assert_eq!(fs::read(&path).await.unwrap(), big);
        let m = fs::metadata(&path).await.unwrap();
        assert!(m.is_file() && !m.is_dir());
        assert_eq!(m.len(), big.len() as u64);
        assert!(m.modified() > std::time::UNIX_EPOCH);
        assert_eq!(
            fs::read(dir.join("empty-missing"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        fs::write(dir.join("empty"), b"").await.unwrap();
        assert!(fs::read(dir.join("empty")).await.unwrap().is_empty());

        let sub = dir.join("sub");
        fs::create_dir(&sub).await.unwrap();
        assert!(fs::metadata(&sub).await.unwrap().is_dir());
        let e = fs::create_dir(&sub).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("sub"), "{e}");
        fs::create_dir_all(dir.join("a/b/c")).await.unwrap();
        assert!(fs::metadata(dir.join("a/b/c")).await.unwrap().is_dir());

        let moved = sub.join("moved");
        fs::rename(&path, &moved).await.unwrap();
        assert_eq!(
            fs::metadata(&path).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(fs::metadata(&moved).await.unwrap().len(), big.len() as u64);
        let e = fs::remove_dir(&sub).await.unwrap_err();
        assert!(e.to_string().contains("remove directory"), "{e}");
        fs::remove_file(&moved).await.unwrap();
        fs::remove_dir(&sub).await.unwrap();
        let e = fs::remove_file(&moved).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    });
}

#[test]
fn sync_set_len_and_std_round_trips() {
    let _w = watchdog("fs_sync", 30);
    let dir = temp_dir("fs-sync");
    let path = dir.join("f");
    runtime(1, 64).block_on(async move {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&path)
            .await
            .unwrap();
        f.write_all_at(vec![7u8; 1000], 0).await.0.unwrap();
        f.sync_data().await.unwrap();
        f.sync_all().await.unwrap();
        f.set_len(10).await.unwrap();
        assert_eq!(f.metadata().await.unwrap().len(), 10);
        f.set_len(4096).await.unwrap();
        let (res, buf) = f.read_exact_at(vec![1u8; 20], 0).await;
        res.unwrap();
        assert_eq!(&buf[..10], &[7u8; 10]);
        assert_eq!(&buf[10..], &[0u8; 10], "extended with zeros");
        let std_f = f.into_std().unwrap();
        assert_eq!(std_f.metadata().unwrap().len(), 4096);
        let back = File::from_std(std_f);
        let (res, _) = back.read_at(Vec::with_capacity(8), 4090).await;
        assert_eq!(res.unwrap(), 6);
    });
}

#[test]
fn dropped_file_reads_and_writes_leave_the_file_usable() {
    let _w = watchdog("fs_cancel", 60);
    let dir = temp_dir("fs-cancel");
    let path = dir.join("f");
    // One blocking thread: on epoll a dropped write that had already
    // started still completes (it cannot be interrupted), and with more
    // threads it could complete after the final write below, on another
    // thread, whenever the machine is loaded (a full test run saw it).
    // Jobs then run in order, so what is tested is the guarantee itself: a
    // dropped write still queued never runs, a running one lands before
    // anything queued after it.
    let rt = percore::Runtime::builder()
        .driver(driver())
        .workers(1)
        .ring_entries(64)
        .blocking_threads(1)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&path)
            .await
            .unwrap();
        f.write_all_at(vec![3u8; 1 << 16], 0).await.0.unwrap();
        for i in 0..300u64 {
            // A zero timeout drops the op after its first poll: in flight
            // on io_uring, queued or running on the pool on epoll.
            let _ = timeout(Duration::ZERO, f.read_at(vec![0u8; 1 << 16], 0)).await;
            let _ = timeout(Duration::ZERO, f.write_at(vec![4u8; 512], i * 64)).await;
        }
        // After the dropped ops the file still works, and a write made now
        // is what stays: a dropped write still queued must not land later.
        f.write_all_at(vec![5u8; 1 << 16], 0).await.0.unwrap();
        percore::time::sleep(Duration::from_millis(50)).await;
        let (res, buf) = f.read_exact_at(vec![0u8; 1 << 16], 0).await;
        res.unwrap();
        assert!(buf.iter().all(|&b| b == 5));
    });
}

/// The epoll driver's path: a full blocking pool refuses file calls at
/// once with a clear error, and gives the buffer back.
#[test]
fn on_epoll_a_full_blocking_pool_refuses_file_io_and_returns_the_buffer() {
    let _w = watchdog("fs_pool_full", 30);
    let dir = temp_dir("fs-pool");
    let path = dir.join("f");
    std::fs::write(&path, b"data").unwrap();
    let rt = Runtime::builder()
        .driver(Driver::Epoll)
        .workers(1)
        .blocking_threads(1)
        .blocking_queue(1)
        .build()
        .unwrap();
    let (release, wait) = mpsc::channel::<()>();
    rt.block_on(async move {
        let f = File::open(&path).await.unwrap();
        let (started_tx, started) = mpsc::channel();
        let busy = percore::task::spawn_blocking(move || {
            started_tx.send(()).unwrap();
            let _ = wait.recv_timeout(Duration::from_secs(10));
        });
        started.recv().unwrap();
        // The one thread is busy; this job fills the one queue slot.
        let queued = percore::task::spawn_blocking(|| ());
        let mut buf = Vec::with_capacity(77);
        buf.extend_from_slice(b"mine");
        let (res, buf) = f.read_at(buf, 0).await;
        let e = res.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert!(e.to_string().contains("blocking_threads"), "{e}");
        assert_eq!((buf.capacity(), &buf[..]), (77, &b"mine"[..]));
        release.send(()).unwrap();
        busy.await.unwrap();
        queued.await.unwrap();
        let (res, buf) = f.read_at(buf, 0).await;
        res.unwrap();
        assert_eq!(buf, b"data");
    });
}
