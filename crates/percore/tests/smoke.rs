use std::time::{Duration, Instant};

use percore::net::{TcpListener, TcpStream};
use percore::Runtime;

#[test]
fn smoke() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    for w in rt.workers() {
        eprintln!("{w}");
    }
    assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    let t = Instant::now();
    rt.block_on(percore::time::sleep(Duration::from_millis(50)));
    assert!(t.elapsed() >= Duration::from_millis(50));
    let echoed = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let server = percore::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, buf) = s.read(Vec::with_capacity(64)).await;
            r.unwrap();
            s.write_all(buf).await.0.unwrap();
        });
        let c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hello".to_vec()).await.0.unwrap();
        let (r, buf) = c.read(Vec::with_capacity(64)).await;
        r.unwrap();
        server.await.unwrap();
        buf
    });
    assert_eq!(echoed, b"hello");
    eprintln!("{:?}", rt.metrics());
}
