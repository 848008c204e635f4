//! The PROXY protocol (HAProxy's spec, versions 1 and 2): reading the header an L4
//! balancer puts in front of a client connection, and writing one toward a backend.
//!
//! Owns: the parser (`parse`, pure, strict, bounded by `MAX_V2_BODY`; our own rather
//! than a crate, and fuzzed against the `ppp` crate by tests/proxy_proto.rs), the
//! reader that takes the header off a socket before TLS (`read_header`), and the
//! encoders (`encode`). Does not own: who is trusted, deadlines or what the address
//! is used for (listen.rs), nor when a backend gets a header (backends/connect.rs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The v2 signature.
pub const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line the spec allows, CRLF included.
pub const V1_MAX: usize = 107;
/// The largest v2 body (addresses and TLVs) accepted: the longest address block
/// (UNIX, 216 bytes) plus 512 bytes of TLVs. Longer is refused.
pub const MAX_V2_BODY: usize = 216 + 512;

/// What a valid header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied TCP connection: the client (`source`) and the address it
    /// connected to (`destination`).
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 LOCAL (the balancer's own connection, e.g. a health check), v1 UNKNOWN,
    /// or a v2 address family we do not carry (UNSPEC, UNIX): the connection's own
    /// addresses stand.
    Local,
}

/// Why a header was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// More bytes are needed to decide.
    Incomplete,
    /// Neither signature.
    NotProxy,
    /// A v1 line that breaks the grammar (or is longer than 107 bytes).
    BadV1,
    /// A v2 header with a bad version, command, family or address block.
    BadV2,
    /// A v2 body longer than `MAX_V2_BODY`.
    TooLong,
}

impl Error {
    pub fn reason(self) -> &'static str {
        match self {
            Error::Incomplete => "PROXY header incomplete",
            Error::NotProxy => "no PROXY header",
            Error::BadV1 => "malformed PROXY v1 header",
            Error::BadV2 => "malformed PROXY v2 header",
            Error::TooLong => "PROXY v2 header too long",
        }
    }
}

/// Parses a header at the start of `buf`: the header and its length in bytes
/// (what follows it is not looked at).
pub fn parse(buf: &[u8]) -> Result<(Header, usize), Error> {
    match buf.first() {
        None => Err(Error::Incomplete),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(Error::NotProxy),
    }
}

fn prefix_ok(buf: &[u8], sig: &[u8]) -> Result<(), Error> {
    let n = buf.len().min(sig.len());
    if buf[..n] != sig[..n] {
        return Err(Error::NotProxy);
    }
    if n < sig.len() {
        return Err(Error::Incomplete);
    }
    Ok(())
}

fn parse_v1(buf: &[u8]) -> Result<(Header, usize), Error> {
    prefix_ok(buf, b"PROXY ")?;
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Error::BadV1)
        } else {
            Err(Error::Incomplete)
        };
    };
    let len = lf + 1;
    let line = window[..lf].strip_suffix(b"\r").ok_or(Error::BadV1)?;
    let line = std::str::from_utf8(&line[6..]).map_err(|_| Error::BadV1)?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        // The spec: whatever follows UNKNOWN up to the CRLF is ignored.
        return Ok((Header::Local, len));
    }
    let mut parts = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Error::BadV1);
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            src.parse::<Ipv4Addr>().map_err(|_| Error::BadV1)?.into(),
            dst.parse::<Ipv4Addr>().map_err(|_| Error::BadV1)?.into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>().map_err(|_| Error::BadV1)?.into(),
            dst.parse::<Ipv6Addr>().map_err(|_| Error::BadV1)?.into(),
        ),
        _ => return Err(Error::BadV1),
    };
    Ok((
        Header::Proxied {
            source: SocketAddr::new(src, port(sport)?),
            destination: SocketAddr::new(dst, port(dport)?),
        },
        len,
    ))
}

/// A decimal port: digits only, no leading zero (but "0"), at most 65535.
fn port(s: &str) -> Result<u16, Error> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(Error::BadV1);
    }
    s.parse().map_err(|_| Error::BadV1)
}

fn parse_v2(buf: &[u8]) -> Result<(Header, usize), Error> {
    prefix_ok(buf, V2_SIG)?;
    if buf.len() < 16 {
        return Err(Error::Incomplete);
    }
    let (ver_cmd, fam, len) = (
        buf[12],
        buf[13],
        usize::from(u16::from_be_bytes([buf[14], buf[15]])),
    );
    if ver_cmd >> 4 != 2 {
        return Err(Error::BadV2);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::BadV2),
    };
    if len > MAX_V2_BODY {
        return Err(Error::TooLong);
    }
    let (family, proto) = (fam >> 4, fam & 0x0f);
    if family > 3 || proto > 2 {
        return Err(Error::BadV2);
    }
    let need = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if len < need {
        return Err(Error::BadV2);
    }
    if buf.len() < 16 + len {
        return Err(Error::Incomplete);
    }
    let total = 16 + len;
    if local {
        return Ok((Header::Local, total));
    }
    let a = &buf[16..total];
    let be16 = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    let header = match (family, proto) {
        (0, _) | (3, _) => Header::Local,
        (1, 1) => {
            let ip = |i: usize| IpAddr::from([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            Header::Proxied {
                source: SocketAddr::new(ip(0), be16(8)),
                destination: SocketAddr::new(ip(4), be16(10)),
            }
        }
        (2, 1) => {
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                IpAddr::from(o)
            };
            Header::Proxied {
                source: SocketAddr::new(ip(0), be16(32)),
                destination: SocketAddr::new(ip(16), be16(34)),
            }
        }
        // DGRAM (or UNSPEC) over an INET family: not a TCP client.
        _ => return Err(Error::BadV2),
    };
    Ok((header, total))
}

/// Why `read_header` gave up.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// The peer closed before a whole header arrived.
    Closed,
    Invalid(Error),
}

impl ReadError {
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::Io(_) => "read error before the PROXY header",
            ReadError::Closed => "closed before the PROXY header",
            ReadError::Invalid(e) => e.reason(),
        }
    }
}

/// Reads one header off `tcp`, consuming exactly its bytes: v2 by its announced
/// length, v1 by peeking for the LF and taking only the bytes before it (all of
/// which belong to the line). The buffer never holds more than 16 +
/// `MAX_V2_BODY` bytes. The caller bounds the time.
pub async fn read_header(tcp: &mut TcpStream) -> Result<Header, ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(V1_MAX);
    let mut peek = [0u8; V1_MAX];
    loop {
        let want = match parse(&buf) {
            Ok((h, _)) => return Ok(h),
            Err(Error::Incomplete) => next_read(&buf, tcp, &mut peek).await?,
            Err(e) => return Err(ReadError::Invalid(e)),
        };
        let start = buf.len();
        buf.resize(start + want, 0);
        tcp.read_exact(&mut buf[start..]).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ReadError::Closed
            } else {
                ReadError::Io(e)
            }
        })?;
    }
}

/// How many more bytes may be consumed without reading past the header.
async fn next_read(
    buf: &[u8],
    tcp: &mut TcpStream,
    peek: &mut [u8; V1_MAX],
) -> Result<usize, ReadError> {
    if buf.first() == Some(&b'\r') {
        // v2: the fixed part, then the announced body (parse checked its bound).
        if buf.len() < 16 {
            return Ok(16 - buf.len());
        }
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        return Ok(16 + len - buf.len());
    }
    // Signature unknown yet, or v1: look without taking.
    let room = V1_MAX - buf.len().min(V1_MAX);
    if room == 0 {
        return Err(ReadError::Invalid(Error::BadV1));
    }
    let n = tcp.peek(&mut peek[..room]).await.map_err(ReadError::Io)?;
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if buf.is_empty() && peek[0] != b'P' {
        // v2 (or garbage, refused by parse): take the first byte only.
        return Ok(1);
    }
    Ok(match peek[..n].iter().position(|&b| b == b'\n') {
        Some(lf) => lf + 1,
        None => n,
    })
}

pub use crate::config::ProxyVersion as Version;

/// The header of a connection wsgate makes on its own behalf (a health check):
/// v1 `UNKNOWN`, v2 `LOCAL`.
pub fn encode_local(version: Version) -> Vec<u8> {
    match version {
        Version::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        Version::V2 => {
            let mut out = V2_SIG.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0, 0]);
            out
        }
    }
}

/// The header for a proxied TCP connection from `source` to `destination`. Mixed
/// families (one IPv4, one IPv6) are written as IPv6, IPv4 mapped.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (s, d) = match (source.ip().to_canonical(), destination.ip().to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(v6(s)), IpAddr::V6(v6(d))),
    };
    match version {
        Version::V1 => {
            let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {s} {d} {} {}\r\n",
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(V2_SIG);
            out.push(0x21); // version 2, PROXY
            match (s, d) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x11, 0, 12]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.extend_from_slice(&[0x21, 0, 36]);
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
            out
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Writes a header for `source` → `destination` on `out` (`None`: a LOCAL one).
pub async fn write_header<W: AsyncWrite + Unpin>(
    out: &mut W,
    version: Version,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> std::io::Result<()> {
    let bytes = match addrs {
        Some((s, d)) => encode(version, s, d),
        None => encode_local(version),
    };
    out.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_round_trip() {
        let s: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let d: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        for v in [Version::V1, Version::V2] {
            let mut b = encode(v, s, d);
            let n = b.len();
            b.extend_from_slice(b"\x16\x03\x01");
            let want = Header::Proxied {
                source: s,
                destination: d,
            };
            assert_eq!(parse(&b), Ok((want, n)));
            for cut in 0..n {
                assert_eq!(parse(&b[..cut]), Err(Error::Incomplete), "{v:?} cut {cut}");
            }
        }
        let s6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let b = encode(Version::V2, s6, d);
        let (h, _) = parse(&b).unwrap();
        let d6: SocketAddr = "[::ffff:127.0.0.1]:8443".parse().unwrap();
        assert_eq!(
            h,
            Header::Proxied {
                source: s6,
                destination: d6
            }
        );
    }

    #[test]
    fn local_unknown_and_refusals() {
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok((Header::Local, 15)));
        assert_eq!(parse(b"PROXY UNKNOWN 1 2 3\r\nx"), Ok((Header::Local, 21)));
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Ok((Header::Local, 16)));
        assert_eq!(local, encode_local(Version::V2));
        assert_eq!(parse(&encode_local(Version::V1)), Ok((Header::Local, 15)));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Err(Error::BadV1),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(&[b'P'; 200]), Err(Error::NotProxy));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(200, b'x');
        assert_eq!(parse(&long), Err(Error::BadV1));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::NotProxy));
        assert_eq!(parse(b"\x16\x03\x01"), Err(Error::NotProxy));
        let mut big = V2_SIG.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0x04, 0x00]);
        assert_eq!(parse(&big), Err(Error::TooLong));
        let mut short = V2_SIG.to_vec();
        short.extend_from_slice(&[0x21, 0x21, 0, 12]);
        assert_eq!(parse(&short), Err(Error::BadV2));
    }
}
