//! Fuzzing the PROXY protocol parser (src/proxy_proto.rs) against the `ppp` crate as
//! an independent reference: random bytes, valid v1/v2 headers and mutations of them.
//! Never a panic; a header is accepted only when ppp accepts it with the same
//! addresses and length; every valid header is accepted, every strict prefix of one
//! is incomplete (so the reader never needs a byte past it), and over a real socket
//! the bytes after the header are left untouched for TLS.

use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsgate::accept::proxy_proto::{self, Error, Header, MAX_V2_BODY, V2_SIG, parse};

/// What ppp makes of `buf`: the header and its length, or `None` if it refuses.
fn reference(buf: &[u8]) -> Option<(Header, usize)> {
    use ppp::HeaderResult;
    let sock = |a: IpAddr, p: u16| SocketAddr::new(a, p);
    match HeaderResult::parse(buf) {
        HeaderResult::V1(Ok(h)) => {
            let hdr = match h.addresses {
                ppp::v1::Addresses::Unknown => Header::Local,
                ppp::v1::Addresses::Tcp4(a) => Header::Proxied {
                    source: sock(a.source_address.into(), a.source_port),
                    destination: sock(a.destination_address.into(), a.destination_port),
                },
                ppp::v1::Addresses::Tcp6(a) => Header::Proxied {
                    source: sock(a.source_address.into(), a.source_port),
                    destination: sock(a.destination_address.into(), a.destination_port),
                },
            };
            Some((hdr, h.header.len()))
        }
        HeaderResult::V2(Ok(h)) => {
            let hdr = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => Header::Local,
                (_, ppp::v2::Addresses::IPv4(a)) => Header::Proxied {
                    source: sock(a.source_address.into(), a.source_port),
                    destination: sock(a.destination_address.into(), a.destination_port),
                },
                (_, ppp::v2::Addresses::IPv6(a)) => Header::Proxied {
                    source: sock(a.source_address.into(), a.source_port),
                    destination: sock(a.destination_address.into(), a.destination_port),
                },
                _ => Header::Local,
            };
            Some((hdr, h.len()))
        }
        _ => None,
    }
}

fn check_against_reference(buf: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((h, n)) = parse(buf) {
        let r = reference(buf);
        prop_assert_eq!(
            r,
            Some((h, n)),
            "we accepted what ppp did not (or read it differently): {:?}",
            buf
        );
        prop_assert!(n <= 16 + MAX_V2_BODY);
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Valid {
    bytes: Vec<u8>,
    header: Header,
}

fn addr_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| (
                SocketAddr::new(Ipv4Addr::from(s).into(), sp),
                SocketAddr::new(Ipv4Addr::from(d).into(), dp)
            )),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| (
                SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                SocketAddr::new(Ipv6Addr::from(d).into(), dp)
            )),
    ]
}

/// A v1 line (TCP4, TCP6 or UNKNOWN).
fn valid_v1() -> impl Strategy<Value = Valid> {
    prop_oneof![
        addr_pair().prop_map(|(s, d)| Valid {
            bytes: proxy_proto::encode(proxy_proto::Version::V1, s, d),
            header: Header::Proxied {
                source: s,
                destination: d
            },
        }),
        Just(Valid {
            bytes: b"PROXY UNKNOWN\r\n".to_vec(),
            header: Header::Local,
        }),
    ]
}

/// A v2 header built by hand (not by our encoder): PROXY or LOCAL, INET, INET6,
/// UNSPEC or UNIX, with up to 512 bytes of TLVs.
fn valid_v2() -> impl Strategy<Value = Valid> {
    (
        addr_pair(),
        any::<bool>(),
        0u8..4,
        proptest::collection::vec(any::<u8>(), 0..=512),
    )
        .prop_map(|((s, d), local, family, tlv)| {
            let mut body = Vec::new();
            let header = match (family, s.ip(), d.ip()) {
                (1, IpAddr::V4(si), IpAddr::V4(di)) => {
                    body.extend_from_slice(&si.octets());
                    body.extend_from_slice(&di.octets());
                    body.extend_from_slice(&s.port().to_be_bytes());
                    body.extend_from_slice(&d.port().to_be_bytes());
                    Header::Proxied {
                        source: s,
                        destination: d,
                    }
                }
                (2, IpAddr::V6(si), IpAddr::V6(di)) => {
                    body.extend_from_slice(&si.octets());
                    body.extend_from_slice(&di.octets());
                    body.extend_from_slice(&s.port().to_be_bytes());
                    body.extend_from_slice(&d.port().to_be_bytes());
                    Header::Proxied {
                        source: s,
                        destination: d,
                    }
                }
                (3, _, _) => {
                    body.extend_from_slice(&[b'/'; 216]);
                    Header::Local
                }
                _ => Header::Local,
            };
            let fam = match header {
                Header::Proxied { source, .. } if source.is_ipv4() => 0x11,
                Header::Proxied { .. } => 0x21,
                Header::Local if family == 3 => 0x31,
                Header::Local => 0x00,
            };
            body.extend_from_slice(&tlv);
            let mut bytes = V2_SIG.to_vec();
            bytes.push(if local { 0x20 } else { 0x21 });
            bytes.push(fam);
            bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&body);
            Valid {
                bytes,
                header: if local { Header::Local } else { header },
            }
        })
}

fn valid() -> impl Strategy<Value = Valid> {
    prop_oneof![valid_v1(), valid_v2()]
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        match *m {
            Mutation::Set(i, v) => b[i % n] = v,
            Mutation::Insert(i, v) => b.insert(i % (n + 1), v),
            Mutation::Remove(i) => {
                b.remove(i % n);
            }
            Mutation::Truncate(i) => b.truncate(i % n),
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_and_agree(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_against_reference(&buf)?;
    }

    #[test]
    fn random_after_a_signature(v2 in any::<bool>(), rest in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut buf = if v2 { V2_SIG.to_vec() } else { b"PROXY ".to_vec() };
        buf.extend_from_slice(&rest);
        check_against_reference(&buf)?;
    }

    #[test]
    fn valid_headers_are_accepted_and_end_where_they_end(
        v in valid(),
        trailing in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = v.bytes.clone();
        buf.extend_from_slice(&trailing);
        prop_assert_eq!(parse(&buf), Ok((v.header, v.bytes.len())));
        check_against_reference(&buf)?;
        for cut in 0..v.bytes.len() {
            prop_assert_eq!(parse(&v.bytes[..cut]), Err(Error::Incomplete), "prefix {}", cut);
        }
    }

    #[test]
    fn mutated_headers_agree_with_the_reference(
        v in valid(),
        ms in proptest::collection::vec(mutation(), 1..4),
        trailing in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = apply(v.bytes, &ms);
        buf.extend_from_slice(&trailing);
        check_against_reference(&buf)?;
    }
}

/// Over a real loopback socket, in pieces: `read_header` takes exactly the header
/// and what follows (the TLS ClientHello, in real life) is still there.
fn read_over_socket(v: &Valid, trailing: &[u8], split: usize) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut all = v.bytes.clone();
        all.extend_from_slice(trailing);
        let writer = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            let cut = split % (all.len() + 1);
            c.write_all(&all[..cut]).await.unwrap();
            c.flush().await.unwrap();
            tokio::task::yield_now().await;
            c.write_all(&all[cut..]).await.unwrap();
            c.shutdown().await.unwrap();
        });
        let (mut s, _) = l.accept().await.unwrap();
        let h = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            proxy_proto::read_header(&mut s),
        )
        .await
        .expect("header read in time")
        .map_err(|e| TestCaseError::fail(format!("refused: {e:?}")))?;
        prop_assert_eq!(h, v.header);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        prop_assert_eq!(&rest[..], trailing);
        writer.await.unwrap();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn reader_leaves_the_bytes_after_the_header(
        v in valid(),
        trailing in proptest::collection::vec(any::<u8>(), 0..64),
        split in any::<usize>(),
    ) {
        read_over_socket(&v, &trailing, split)?;
    }
}

#[tokio::test]
async fn reader_refuses_garbage_and_oversized_headers() {
    for bytes in [
        b"\x16\x03\x01\x02\x00".to_vec(),
        {
            let mut b = V2_SIG.to_vec();
            b.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
            b
        },
        {
            let mut b = b"PROXY UNKNOWN ".to_vec();
            b.resize(400, b'a');
            b
        },
    ] {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let w = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = c.write_all(&bytes).await;
            c
        });
        let (mut s, _) = l.accept().await.unwrap();
        let r = proxy_proto::read_header(&mut s).await;
        assert!(
            matches!(r, Err(proxy_proto::ReadError::Invalid(_))),
            "{r:?}"
        );
        drop(w.await);
    }
}
