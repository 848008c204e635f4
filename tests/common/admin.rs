//! Talking to the admin listener over plain HTTP, and reading its answers with a
//! real Prometheus text parser (the `prometheus-parse` crate).

use super::{RawResponse, read_response, within};
use std::net::{IpAddr, SocketAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// `GET path` from 127.0.0.1, the whole answer.
pub async fn get(admin: SocketAddr, path: &str) -> RawResponse {
    get_from(admin, path, None).await
}

/// `method path` from `from` (a loopback address) or 127.0.0.1.
pub async fn request_from(
    admin: SocketAddr,
    method: &str,
    path: &str,
    from: Option<IpAddr>,
) -> RawResponse {
    let mut s = match from {
        None => within("admin connect", TcpStream::connect(admin))
            .await
            .expect("admin connect"),
        Some(ip) => {
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(ip, 0)).unwrap();
            within("admin connect", sock.connect(admin))
                .await
                .expect("admin connect")
        }
    };
    let req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut s).await
}

pub async fn get_from(admin: SocketAddr, path: &str, from: Option<IpAddr>) -> RawResponse {
    request_from(admin, "GET", path, from).await
}

/// `/metrics`, parsed.
pub async fn scrape(admin: SocketAddr) -> Scrape {
    let r = get(admin, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    Scrape::parse(&r.body)
}

/// One scrape, parsed by prometheus-parse.
pub struct Scrape {
    pub text: String,
    pub samples: Vec<prometheus_parse::Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
        Scrape {
            text: text.to_string(),
            samples: parsed.samples,
        }
    }

    /// The value of the sample `name` whose labels include all of `labels`
    /// (counter, gauge, or untyped); panics if there are several.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} matches {} samples",
            found.len()
        );
        found.first().copied()
    }

    /// Like `value`, 0 when absent.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The sample count of histogram `name` with `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map(|b| b.count as u64)
                }
                _ => None,
            })
    }
}
