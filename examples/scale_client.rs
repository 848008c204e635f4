//! The client side of `benches/scale.sh`: opens many TLS WebSocket sessions from
//! many loopback source addresses, holds them until told to go on, then has every
//! session echo one message (checked byte for byte) and close cleanly.
//!
//! ```text
//! scale_client --target 127.0.0.1:19800 --ca certs-example/ca.pem --sessions 16000 \
//!              --sources 127.10.0.0/16 --first-source 1 --concurrency 256 --id 3
//! ```
//!
//! Lean on purpose (100,000 sessions over a few processes): rustls over tokio with
//! frames written and read by hand into small buffers, no tungstenite `WebSocket`
//! (whose buffers are about 128 KiB per socket). Prints one `OPEN` line when every
//! session is open or has failed, waits for SIGUSR1, then prints one `DONE` line and
//! exits (status 1 if any session failed). Only loopback targets are accepted;
//! every phase is bounded by `--timeout`.

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    target: SocketAddr,
    ca: String,
    sni: String,
    sessions: usize,
    /// Source addresses: `base + first .. base + first + count`.
    source_base: u32,
    source_count: u32,
    first_source: u32,
    concurrency: usize,
    id: u32,
    timeout: Duration,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        target: "127.0.0.1:19800".parse()?,
        ca: "certs-example/ca.pem".into(),
        sni: "localhost".into(),
        sessions: 1000,
        source_base: u32::from(Ipv4Addr::new(127, 10, 0, 0)),
        source_count: 1 << 16,
        first_source: 1,
        concurrency: 256,
        id: 0,
        timeout: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--target" => a.target = v()?.parse()?,
            "--ca" => a.ca = v()?,
            "--sni" => a.sni = v()?,
            "--sessions" => a.sessions = v()?.parse()?,
            "--sources" => {
                let s = v()?;
                let (ip, bits) = s.split_once('/').ok_or("--sources: IPv4/prefix")?;
                let bits: u32 = bits.parse()?;
                if !(8..=30).contains(&bits) {
                    return Err("--sources: prefix from /8 to /30".into());
                }
                a.source_base = u32::from(ip.parse::<Ipv4Addr>()?) & (u32::MAX << (32 - bits));
                a.source_count = 1 << (32 - bits);
            }
            "--first-source" => a.first_source = v()?.parse()?,
            "--concurrency" => a.concurrency = v()?.parse()?,
            "--id" => a.id = v()?.parse()?,
            "--timeout" => a.timeout = Duration::from_secs(v()?.parse()?),
            _ => return Err(format!("unknown argument {k}").into()),
        }
    }
    let loopback = |ip: IpAddr| ip.is_loopback();
    if !loopback(a.target.ip()) || !loopback(IpAddr::V4(Ipv4Addr::from(a.source_base))) {
        return Err("only loopback targets and sources".into());
    }
    if a.first_source >= a.source_count {
        return Err("--first-source beyond --sources".into());
    }
    Ok(a)
}

fn tls_config(ca: &str) -> Result<ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The session's source address: spread over the range, skipping `.0` and `.255`.
fn source(a: &Args, n: usize) -> IpAddr {
    let usable = a.source_count - a.first_source;
    let mut off = a.first_source + (n as u32 % usable);
    if off & 0xff == 0 || off & 0xff == 255 {
        off = (off & !0xff) | 1;
    }
    IpAddr::V4(Ipv4Addr::from(a.source_base + off))
}

/// IP_BIND_ADDRESS_NO_PORT: the port is picked at connect(2), unique per 4-tuple.
/// Without it every bind(ip, 0) takes a port number for itself, and once the
/// clients' 100,000 binds cover the ephemeral range the proxy's own connects to
/// its backends fail with EADDRNOTAVAIL.
fn no_port_at_bind(sock: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// TCP from `src`, TLS, the upgrade; the stream once the 101 is read.
async fn open(
    a: &Args,
    connector: &TlsConnector,
    src: IpAddr,
) -> Result<TlsStream<tokio::net::TcpStream>, Error> {
    let sock = TcpSocket::new_v4()?;
    no_port_at_bind(&sock)?;
    sock.bind(SocketAddr::new(src, 0))?;
    let tcp = sock.connect(a.target).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector
        .connect(ServerName::try_from(a.sni.clone())?, tcp)
        .await?;
    let key: [u8; 16] = rand::random();
    let key = base64(&key);
    let req = format!(
        "GET /scale HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        a.sni
    );
    tls.write_all(req.as_bytes()).await?;
    let mut head = [0u8; 1024];
    let mut n = 0;
    loop {
        if n == head.len() {
            return Err("response head over 1 KiB".into());
        }
        // One byte at a time past the head's end would be slow; the proxy sends
        // nothing after the 101 until the client speaks, so reading ahead is safe.
        let r = tls.read(&mut head[n..]).await?;
        if r == 0 {
            return Err("closed during the upgrade".into());
        }
        n += r;
        if let Some(end) = head[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..n]);
            if !text.starts_with("HTTP/1.1 101") {
                return Err(format!("answer: {}", text.lines().next().unwrap_or("")).into());
            }
            if end + 4 != n {
                return Err("bytes after the 101".into());
            }
            break;
        }
    }
    let text = std::str::from_utf8(&head[..n])?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let ok = text.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == accept
        })
    });
    if !ok {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    Ok(tls)
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A masked client frame (FIN set) with a payload under 126 bytes.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key: [u8; 4] = rand::random();
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Reads one unmasked server frame with a payload under 126 bytes.
async fn read_frame(s: &mut TlsStream<tokio::net::TcpStream>) -> Result<(u8, Vec<u8>), Error> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    if h[0] & 0x80 == 0 || h[1] & 0x80 != 0 || h[1] & 0x7f >= 126 {
        return Err(format!("unexpected frame header {h:02x?}").into());
    }
    let mut p = vec![0u8; usize::from(h[1] & 0x7f)];
    s.read_exact(&mut p).await?;
    Ok((h[0] & 0x0f, p))
}

/// One echo, checked byte for byte, then the close handshake (1000 both ways).
async fn echo_and_close(
    mut s: TlsStream<tokio::net::TcpStream>,
    id: u32,
    n: usize,
) -> Result<(), Error> {
    let mut msg = format!("scale {id} {n} ").into_bytes();
    msg.extend((0..16).map(|_| b'a' + rand::random::<u8>() % 26));
    s.write_all(&frame(0x2, &msg)).await?;
    let (op, p) = read_frame(&mut s).await?;
    if op != 0x2 || p != msg {
        return Err("echo differs".into());
    }
    s.write_all(&frame(0x8, &1000u16.to_be_bytes())).await?;
    let (op, p) = read_frame(&mut s).await?;
    if op != 0x8 || p.get(..2) != Some(&1000u16.to_be_bytes()[..]) {
        return Err(format!("close answered with opcode {op} {p:02x?}").into());
    }
    s.shutdown().await?;
    Ok(())
}

fn percentile(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[expect(
    clippy::too_many_lines,
    reason = "a load tool: the ramp, the hold and the report in order"
)]
async fn run(a: Arc<Args>) -> Result<bool, Error> {
    let connector = TlsConnector::from(Arc::new(tls_config(&a.ca)?));
    let gate = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let (go_tx, go_rx) = watch::channel(false);
    let opened = Arc::new(AtomicU64::new(0));
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    for n in 0..a.sessions {
        let (a, connector, gate, opened) =
            (a.clone(), connector.clone(), gate.clone(), opened.clone());
        let (lat_tx, mut go) = (lat_tx.clone(), go_rx.clone());
        tasks.spawn(async move {
            let permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let start = Instant::now();
            let r = tokio::time::timeout(a.timeout, open(&a, &connector, source(&a, n))).await;
            drop(permit);
            let s = match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let _ = lat_tx.send(Err(e.to_string()));
                    return Err(e.to_string());
                }
                Err(_) => {
                    let _ = lat_tx.send(Err("open timed out".into()));
                    return Err("open timed out".into());
                }
            };
            let _ = lat_tx.send(Ok(start.elapsed()));
            opened.fetch_add(1, Ordering::Relaxed);
            go.wait_for(|g| *g).await.map_err(|e| e.to_string())?;
            let permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let r = tokio::time::timeout(a.timeout, echo_and_close(s, a.id, n)).await;
            drop(permit);
            match r {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("echo timed out".into()),
            }
        });
    }
    drop(lat_tx);
    let mut lat = Vec::with_capacity(a.sessions);
    let mut open_errors: Vec<String> = Vec::new();
    while let Some(r) = lat_rx.recv().await {
        match r {
            Ok(d) => lat.push(d),
            Err(e) => open_errors.push(e),
        }
        if lat.len() + open_errors.len() == a.sessions {
            break;
        }
    }
    let open_s = t0.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "OPEN id={} opened={} failed={} open_s={open_s:.2} connect_ms_p50={:.1} p90={:.1} \
         p99={:.1} p999={:.1} max={:.1} client_rss_kib={}",
        a.id,
        lat.len(),
        open_errors.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        percentile(&lat, 1.0),
        rss_kib()
    );
    for e in open_errors.iter().take(5) {
        println!("open error: {e}");
    }
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    if tokio::time::timeout(a.timeout, usr1.recv()).await.is_err() {
        return Err("no SIGUSR1 within --timeout".into());
    }
    let t1 = Instant::now();
    go_tx.send_replace(true);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut errors = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
            Err(e) => {
                failed += 1;
                errors.push(e.to_string());
            }
        }
    }
    println!(
        "DONE id={} echoed_and_closed={ok} failed={failed} echo_s={:.2}",
        a.id,
        t1.elapsed().as_secs_f64()
    );
    for e in errors {
        println!("error: {e}");
    }
    Ok(failed == 0)
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("scale_client: {e}");
            return ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scale_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(a)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("scale_client: {e}");
            ExitCode::FAILURE
        }
    }
}
