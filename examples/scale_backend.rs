//! The backend side of `benches/scale.sh`: a plain-TCP WebSocket echo server lean
//! enough to hold about 19,000 sessions per process (one 1 KiB buffer per session
//! on its task; no tungstenite `WebSocket`, whose buffers are ~128 KiB per socket).
//!
//! ```text
//! scale_backend 127.0.0.1:19810
//! ```
//!
//! Answers the upgrade, echoes data frames (payloads up to 1 KiB, unmasked back),
//! answers Ping with Pong and Close with Close, then closes. Prints `listening on
//! ADDR` once bound, and `sessions=N` on SIGUSR2 (N: sessions open). Loopback only.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

const BUF: usize = 1024;

async fn upgrade(s: &mut TcpStream, buf: &mut [u8; BUF]) -> Result<(), Error> {
    let mut n = 0;
    let end = loop {
        if n == buf.len() {
            return Err("request head over 1 KiB".into());
        }
        let r = s.read(&mut buf[n..]).await?;
        if r == 0 {
            return Err("closed before the request head".into());
        }
        n += r;
        if let Some(p) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    if end != n {
        return Err("bytes after the request head".into());
    }
    let head = std::str::from_utf8(&buf[..n])?;
    let key = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim())
        })
        .ok_or("no Sec-WebSocket-Key")?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    s.write_all(resp.as_bytes()).await?;
    Ok(())
}

/// Echo frames until the close handshake. Frames arrive masked (from the proxy).
async fn echo(s: &mut TcpStream, buf: &mut [u8; BUF]) -> Result<(), Error> {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await?;
        if h[1] & 0x80 == 0 {
            return Err("unmasked client frame".into());
        }
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await?;
                usize::from(u16::from_be_bytes(l))
            }
            127 => return Err("frame over 64 KiB".into()),
            l => usize::from(l),
        };
        if len > BUF - 4 {
            return Err("frame over 1 KiB".into());
        }
        let mut key = [0u8; 4];
        s.read_exact(&mut key).await?;
        let p = &mut buf[4..4 + len];
        s.read_exact(p).await?;
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        let opcode = h[0] & 0x0f;
        let reply = match opcode {
            0x9 => 0xA,
            0xA => continue,
            op => op,
        };
        // The header goes in front of the payload, in the same buffer: one write.
        let start = if len < 126 {
            buf[2] = 0x80 | reply;
            buf[3] = len as u8;
            2
        } else {
            buf[0] = 0x80 | reply;
            buf[1] = 126;
            buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            0
        };
        s.write_all(&buf[start..4 + len]).await?;
        if opcode == 0x8 {
            s.shutdown().await?;
            // Wait for the proxy to close its side (bounded by its close_timeout).
            let _ = s.read(&mut buf[..]).await;
            return Ok(());
        }
    }
}

async fn session(mut s: TcpStream, open: Arc<AtomicU64>) {
    let _ = s.set_nodelay(true);
    open.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; BUF];
    if upgrade(&mut s, &mut buf).await.is_ok() {
        let _ = echo(&mut s, &mut buf).await;
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

async fn run(addr: SocketAddr) -> Result<(), Error> {
    let l = TcpListener::bind(addr).await?;
    println!("listening on {}", l.local_addr()?);
    let open = Arc::new(AtomicU64::new(0));
    let mut usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((s, _)) => {
                    tokio::spawn(session(s, open.clone()));
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = usr2.recv() => println!("sessions={}", open.load(Ordering::Relaxed)),
        }
    }
}

fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or("127.0.0.1:19810".into())
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scale_backend: {e}");
            return ExitCode::from(64);
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("scale_backend: loopback addresses only");
        return ExitCode::from(64);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scale_backend: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale_backend: {e}");
            ExitCode::FAILURE
        }
    }
}
