//! Cookies as a proxy needs them: reading one from the `Cookie` header(s), forwarding
//! the others without one of ours, and writing the `Set-Cookie` of a sticky backend.
//!
//! Owns: the lenient parse of `Cookie` (RFC 6265 section 5.4: `name=value` pairs split
//! on `;`, several header lines allowed) and the attributes wsgate's own cookies get.
//! Does not own: what a cookie means (balance.rs for stickiness, route/mod.rs for matching).

use hyper::header::{self, HeaderMap, HeaderValue};

/// Every `(name, value)` pair of every `Cookie` header, in order.
pub fn pairs(h: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| {
            let (n, v) = p.split_once('=')?;
            Some((n.trim(), v.trim()))
        })
}

/// The value of the first cookie called `name`.
pub fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    pairs(h).find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Removes cookie `name` from `h` (every `Cookie` line is joined into one, as RFC 6265
/// asks of user agents); the header goes away if nothing is left. Untouched when the
/// cookie is absent.
pub fn remove(h: &mut HeaderMap, name: &str) {
    if get(h, name).is_none() {
        return;
    }
    let rest: Vec<String> = pairs(h)
        .filter(|(n, _)| *n != name)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    h.remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&rest.join("; "))
        && !rest.is_empty()
    {
        h.insert(header::COOKIE, v);
    }
}

/// The `Set-Cookie` of a sticky backend: a session cookie for the whole site, not
/// readable by scripts. Over TLS it is `Secure` and `SameSite=None`, so cross-site
/// pages (a Socket.IO client on another origin) still carry it; it grants nothing, so
/// there is nothing to forge across sites.
pub fn set_cookie(name: &str, value: &str, tls: bool) -> Option<HeaderValue> {
    let attrs = if tls {
        "; Path=/; HttpOnly; Secure; SameSite=None"
    } else {
        "; Path=/; HttpOnly"
    };
    HeaderValue::from_str(&format!("{name}={value}{attrs}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(header::COOKIE, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn reads_across_lines_and_pairs() {
        let h = headers(&["a=1; wsgate_srv=abc", "b = 2"]);
        assert_eq!(get(&h, "wsgate_srv"), Some("abc"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "c"), None);
        assert_eq!(get(&h, "wsgate"), None);
    }

    #[test]
    fn remove_keeps_the_others() {
        let mut h = headers(&["a=1; wsgate_srv=abc", "b=2"]);
        remove(&mut h, "wsgate_srv");
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut h = headers(&["wsgate_srv=abc"]);
        remove(&mut h, "wsgate_srv");
        assert!(!h.contains_key(header::COOKIE));
        let mut h = headers(&["x=1", "y=2"]);
        remove(&mut h, "wsgate_srv");
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 2, "untouched");
    }

    #[test]
    fn set_cookie_attributes() {
        assert_eq!(
            set_cookie("s", "v", true).unwrap(),
            "s=v; Path=/; HttpOnly; Secure; SameSite=None"
        );
        assert_eq!(
            set_cookie("s", "v", false).unwrap(),
            "s=v; Path=/; HttpOnly"
        );
    }
}
