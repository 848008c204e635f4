//! Checked config values, deserialized straight from the strings in the file: CIDRs,
//! host patterns, Origin patterns, TLS versions and cipher suite names.
//!
//! Owns: the syntax of each value and the message given when it is wrong (serde puts
//! that message at the value's line and column). Once a value exists it is valid, so
//! nothing downstream parses the string again or falls back to a default.
//! Does not own: what the values mean at run time (admission, routing, origin checks
//! and TLS use them).

use super::finding::InvalidValue;
use rustls::{CipherSuite, SupportedCipherSuite};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Implements `Deserialize` for a type through its `FromStr`, so a bad value is a
/// located config error carrying the type's own message.
macro_rules! from_string {
    ($t:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(super) use from_string;

/// A network prefix, e.g. `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: u128,
    mask: u128,
    v6: bool,
}

impl FromStr for Cidr {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Cidr, InvalidValue> {
        let bad = || {
            InvalidValue::new(format!(
                "{s:?} is not a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\""
            ))
        };
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (
                ip.parse::<IpAddr>().map_err(|_| bad())?,
                Some(len.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let (bits, max, v6) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u8, false),
            IpAddr::V6(v6) => (u128::from(v6), 128u8, true),
        };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        let mask = prefix_mask(len, max);
        Ok(Cidr {
            net: bits & mask,
            mask,
            v6,
        })
    }
}
from_string!(Cidr, "a CIDR string such as \"10.0.0.0/8\"");

impl Cidr {
    /// IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => !self.v6 && u128::from(u32::from(v4)) & self.mask == self.net,
            IpAddr::V6(v6) => self.v6 && u128::from(v6) & self.mask == self.net,
        }
    }
}

/// The mask of a `len`-bit prefix of a `max`-bit address, in the low `max` bits.
pub fn prefix_mask(len: u8, max: u8) -> u128 {
    let all = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    all & !all.checked_shr(u32::from(len)).unwrap_or(0)
}

/// A route's `host`: an exact name or a `*.` wildcard, lower-cased, without a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `chat.example.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: one or more labels in front.
    Suffix(String),
}

impl FromStr for HostMatch {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<HostMatch, InvalidValue> {
        let lower = s.trim().to_ascii_lowercase();
        let bad = || {
            InvalidValue::new(format!(
                "{s:?} is not a host name (\"chat.example.com\" or \"*.example.com\", no port)"
            ))
        };
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower.clone()),
        };
        let ok = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':')
            })
            && (!name.contains(':') || name.starts_with('['));
        if !ok {
            return Err(bad());
        }
        Ok(if wild {
            HostMatch::Suffix(format!(".{name}"))
        } else {
            HostMatch::Exact(name)
        })
    }
}
from_string!(HostMatch, "a host name such as \"chat.example.com\"");

impl HostMatch {
    /// `host` must already be normalized (lower case, no port).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// A serialized origin, normalized: lower case, default port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses an `Origin` header value; `None` for `null` or anything malformed.
    pub fn parse(v: &str) -> Option<Origin> {
        let (scheme, rest) = v.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return None;
        }
        let (host, port) = split_port(rest, default_port)?;
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn split_port(hostport: &str, default_port: u16) -> Option<(&str, u16)> {
    if hostport.starts_with('[') {
        let end = hostport.find(']')?;
        let host = &hostport[..=end];
        return match &hostport[end + 1..] {
            "" => Some((host, default_port)),
            p => Some((host, p.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((hostport, default_port)),
    }
}

/// One `allowed_origins` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any origin (including `null`); useful to state intent explicitly.
    Any,
    /// `https://chat.example.com[:port]`
    Exact(Origin),
    /// `https://*.example.com[:port]`: one or more labels before `example.com`.
    Subdomains {
        scheme: String,
        suffix: String,
        port: u16,
    },
}

impl FromStr for OriginPattern {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<OriginPattern, InvalidValue> {
        if s == "*" {
            return Ok(OriginPattern::Any);
        }
        let bad = || {
            InvalidValue::new(format!(
                "{s:?} is not an origin like \"https://chat.example.com\" or \"https://*.example.com\""
            ))
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        if let Some(suffix) = rest.strip_prefix("*.") {
            let o = Origin::parse(&format!("{scheme}://{suffix}")).ok_or_else(bad)?;
            if !o.host.contains('.') && o.host != "localhost" {
                return Err(InvalidValue::new(format!(
                    "{s:?}: a wildcard must be under a domain with at least two labels"
                )));
            }
            return Ok(OriginPattern::Subdomains {
                scheme: o.scheme,
                suffix: o.host,
                port: o.port,
            });
        }
        if rest.contains('*') {
            return Err(InvalidValue::new(format!(
                "{s:?}: '*' is only allowed as the first label (\"https://*.example.com\")"
            )));
        }
        Origin::parse(s).map(OriginPattern::Exact).ok_or_else(bad)
    }
}
from_string!(
    OriginPattern,
    "an origin such as \"https://chat.example.com\""
);

impl OriginPattern {
    pub fn matches(&self, o: &Origin) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(e) => e == o,
            OriginPattern::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                *scheme == o.scheme
                    && *port == o.port
                    && o.host.len() > suffix.len() + 1
                    && o.host.ends_with(suffix.as_str())
                    && o.host.as_bytes()[o.host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

/// A header wsgate sets for the backend from what it verified (a JWT claim, a client
/// certificate's subject). Headers that carry the protocol, the forwarding chain or
/// the client's own credentials cannot be one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderKey(pub hyper::header::HeaderName);

/// Headers wsgate or the protocol owns: never settable from a claim or a certificate.
const RESERVED_HEADERS: [&str; 17] = [
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "content-type",
    "proxy-authorization",
    "proxy-connection",
    "authorization",
    "cookie",
    "origin",
    "forwarded",
    "x-real-ip",
    "via",
];

impl FromStr for HeaderKey {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<HeaderKey, InvalidValue> {
        let name = hyper::header::HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| InvalidValue::new(format!("{s:?} is not a valid header name")))?;
        let n = name.as_str();
        if RESERVED_HEADERS.contains(&n)
            || n.starts_with("sec-websocket-")
            || n.starts_with("x-forwarded-")
        {
            return Err(InvalidValue::new(format!(
                "{s:?} is a header wsgate or the protocol owns; pick another (e.g. \"X-User-Id\")"
            )));
        }
        Ok(HeaderKey(name))
    }
}
from_string!(HeaderKey, "a header name such as \"X-User-Id\"");

/// `max_memory`: a size ("512MiB", "2GiB", "1500000000") or a share of the
/// cgroup's memory limit ("80%"); "0" turns it off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    Off,
    Bytes(u64),
    /// Percent of the cgroup's `memory.max` (1-100).
    OfCgroup(f64),
}

impl FromStr for MemoryLimit {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<MemoryLimit, InvalidValue> {
        let bad = || {
            InvalidValue::new(format!(
                "{s:?} is not a memory size (\"512MiB\", \"2GiB\", bytes) or a share (\"80%\"), or \"0\""
            ))
        };
        let t = s.trim();
        if t == "0" {
            return Ok(MemoryLimit::Off);
        }
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(InvalidValue::new(format!(
                    "{s:?}: a share must be above 0% and at most 100%"
                )));
            }
            return Ok(MemoryLimit::OfCgroup(p));
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(mult)
            .filter(|b| *b > 0)
            .map(MemoryLimit::Bytes)
            .ok_or_else(bad)
    }
}
from_string!(
    MemoryLimit,
    "a memory size such as \"2GiB\" or a share such as \"80%\""
);

/// What a route condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchOn {
    /// A request header, by its lower-cased name; any occurrence may match.
    Header(String),
    /// A cookie of the `Cookie` header(s), by name (case-sensitive).
    Cookie(String),
    /// A query parameter, by name; compared after percent-decoding.
    Query(String),
}

/// How a route condition compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchValue {
    Exact(String),
    /// Starts with; an empty prefix means "is present".
    Prefix(String),
}

impl MatchValue {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            MatchValue::Exact(e) => v == e,
            MatchValue::Prefix(p) => v.starts_with(p.as_str()),
        }
    }
}

/// One `match_header` / `match_cookie` / `match_query` condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub on: MatchOn,
    pub value: MatchValue,
}

/// A cookie name as RFC 6265 allows: a non-empty HTTP token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Key material read from a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub std::sync::Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// `min_version`: TLS 1.0 and 1.1 are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// A cipher suite wsgate offers: one of the AEAD, forward-secret suites of the
/// aws-lc-rs provider, by its rustls name.
#[derive(Clone, Copy, PartialEq)]
pub struct SuiteName(pub SupportedCipherSuite);

impl fmt::Debug for SuiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&suite_name(self.0.suite()))
    }
}

impl SuiteName {
    pub fn is_tls13(&self) -> bool {
        matches!(self.0, SupportedCipherSuite::Tls13(_))
    }
}

/// Every suite the provider implements: all AEAD with forward secrecy.
pub fn offered_suites() -> Vec<SupportedCipherSuite> {
    rustls::crypto::aws_lc_rs::default_provider().cipher_suites
}

fn suite_name(s: CipherSuite) -> String {
    s.as_str().map_or_else(|| format!("{s:?}"), str::to_string)
}

impl FromStr for SuiteName {
    type Err = InvalidValue;
    fn from_str(n: &str) -> Result<SuiteName, InvalidValue> {
        let offered = offered_suites();
        if let Some(s) = offered.iter().find(|s| suite_name(s.suite()) == n) {
            return Ok(SuiteName(*s));
        }
        let names: Vec<String> = offered.iter().map(|s| suite_name(s.suite())).collect();
        let known = (0..=u16::MAX).any(|v| CipherSuite::from(v).as_str() == Some(n));
        Err(if known {
            InvalidValue::new(format!(
                "{n:?} is not allowed: only AEAD suites with forward secrecy are offered (one of {})",
                names.join(", ")
            ))
        } else {
            InvalidValue::new(format!(
                "unknown cipher suite {n:?} (expected one of {})",
                names.join(", ")
            ))
        })
    }
}
from_string!(
    SuiteName,
    "a cipher suite name such as \"TLS13_AES_128_GCM_SHA256\""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let c6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!c6.contains("2001:db9::1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            "Chat.Example.com".parse::<HostMatch>(),
            Ok(HostMatch::Exact("chat.example.com".into()))
        );
        let w: HostMatch = "*.example.com".parse().unwrap();
        assert!(w.matches("a.example.com"));
        assert!(!w.matches("example.com"));
        for bad in ["", "a b", "host:8080", "*."] {
            assert!(bad.parse::<HostMatch>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_origin_patterns_are_refused() {
        for bad in [
            "chat.example.com",
            "https://",
            "https://a.*.com",
            "ftp://x.com",
            "https://*.com",
            "https://x.com/path",
        ] {
            assert!(bad.parse::<OriginPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_limits() {
        assert_eq!("2GiB".parse(), Ok(MemoryLimit::Bytes(2 << 30)));
        assert_eq!("512MiB".parse(), Ok(MemoryLimit::Bytes(512 << 20)));
        assert_eq!("1000".parse(), Ok(MemoryLimit::Bytes(1000)));
        assert_eq!("80%".parse(), Ok(MemoryLimit::OfCgroup(80.0)));
        assert_eq!("0".parse(), Ok(MemoryLimit::Off));
        for bad in ["", "2GB", "-1", "0%", "101%", "x", "1.5GiB"] {
            assert!(bad.parse::<MemoryLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn suite_names() {
        assert!(
            "TLS13_AES_128_GCM_SHA256"
                .parse::<SuiteName>()
                .unwrap()
                .is_tls13()
        );
        let e = "TLS_RSA_WITH_AES_128_CBC_SHA"
            .parse::<SuiteName>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not allowed"), "{e}");
        let e = "TLS_BOGUS".parse::<SuiteName>().unwrap_err().to_string();
        assert!(e.contains("unknown cipher suite"), "{e}");
    }
}
