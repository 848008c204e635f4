//! A small authoritative DNS server on loopback UDP for discovery tests: it answers
//! A and AAAA queries from a table the test changes while the proxy runs, answers
//! NXDOMAIN for names it does not know, and can be told to stop answering.
//! Written by hand (RFC 1035 section 4): a header, one question, answers with a
//! compression pointer to the question's name, TTL 0.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Shared {
    names: Mutex<HashMap<String, Vec<IpAddr>>>,
    silent: AtomicBool,
    /// Queries received, answered or not.
    queries: AtomicUsize,
    query_seen: Notify,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("dns bind");
        let addr = sock.local_addr().expect("dns addr");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                s.queries.fetch_add(1, Ordering::SeqCst);
                s.query_seen.notify_waiters();
                if s.silent.load(Ordering::SeqCst) {
                    continue;
                }
                let reply = answer(&buf[..n], &s.names.lock().unwrap());
                if let Some(reply) = reply {
                    let _ = sock.send_to(&reply, from).await;
                }
            }
        });
        DnsServer { addr, shared, task }
    }

    /// `name` now resolves to `ips` (an empty list: known name, no records).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        self.shared
            .names
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), ips.to_vec());
    }

    /// Stops (or resumes) answering anything.
    pub fn silent(&self, on: bool) {
        self.shared.silent.store(on, Ordering::SeqCst);
    }

    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }

    /// Waits until more than `n` queries have arrived in total.
    pub async fn wait_queries(&self, n: usize) {
        loop {
            let seen = self.shared.query_seen.notified();
            if self.queries() > n {
                return;
            }
            seen.await;
        }
    }
}

/// The reply to one query, or `None` if it is not a query we can read.
fn answer(q: &[u8], names: &HashMap<String, Vec<IpAddr>>) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    q.get(..question_end)?;
    let name = labels.join(".");
    let found = names.get(&name);
    let ips: Vec<IpAddr> = found
        .map(|v| {
            v.iter()
                .copied()
                .filter(|ip| match qtype {
                    1 => ip.is_ipv4(),
                    28 => ip.is_ipv6(),
                    _ => false,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut r = Vec::with_capacity(512);
    r.extend_from_slice(&q[0..2]); // id
    let rd = q[2] & 0x01;
    r.push(0x84 | rd); // QR, AA, RD copied
    r.push(0x80 | if found.is_none() { 3 } else { 0 }); // RA; NXDOMAIN or NOERROR
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    r.extend_from_slice(&q[12..question_end]);
    for ip in ips {
        r.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        let (t, data) = match ip {
            IpAddr::V4(v4) => (1u16, v4.octets().to_vec()),
            IpAddr::V6(v6) => (28u16, v6.octets().to_vec()),
        };
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes()); // IN
        r.extend_from_slice(&0u32.to_be_bytes()); // TTL 0
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    Some(r)
}
