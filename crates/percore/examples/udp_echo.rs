//! A UDP echo server: every datagram goes back to its sender.
//!
//!     cargo run --release -p percore --example udp_echo -- 127.0.0.1:7001
//!
//! With `--demo` it echoes for a few clients on a free loopback port,
//! checks every reply, prints a summary and exits.

use std::net::SocketAddr;

use percore::net::UdpSocket;

async fn serve(sock: UdpSocket) -> std::io::Result<()> {
    // One buffer for every datagram: 65,507 bytes fits any UDP payload.
    let mut buf = Vec::with_capacity(65_507);
    loop {
        let (res, b) = sock.recv_from(buf).await;
        let (_, from) = res?;
        let (res, mut b) = sock.send_to(b, from).await;
        res?;
        b.clear();
        buf = b;
    }
}

fn main() -> std::io::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7001".into());
    let rt = percore::Runtime::new()?;
    if arg != "--demo" {
        let addr: SocketAddr = arg.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{arg:?}: {e}"))
        })?;
        return rt.block_on(async move {
            let sock = UdpSocket::bind(addr)?;
            println!("udp_echo: listening on {}", sock.local_addr()?);
            serve(sock).await
        });
    }
    let n = rt.block_on(async {
        let server = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
        let addr = server.local_addr()?;
        percore::spawn(serve(server));
        let mut checked = 0;
        for c in 0..4u8 {
            let client = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
            client.connect(addr).await?;
            for size in [1usize, 100, 1400, 9000] {
                client.send(vec![c; size]).await.0?;
                let (res, back) = client.recv(Vec::with_capacity(65_507)).await;
                assert_eq!(res?, size);
                assert!(back.iter().all(|&b| b == c));
                checked += 1;
            }
        }
        Ok::<usize, std::io::Error>(checked)
    })?;
    println!("udp_echo demo: {n} datagrams echoed with their boundaries");
    Ok(())
}
