//! What passes through: keep-alive reuse, headers, chunked bodies and HEAD, an
//! upgrade after plain requests, refuse routes, smuggling shapes, body limits,
//! an early answer, the request counters.

use super::*;

#[tokio::test]
async fn keep_alive_reuses_the_client_and_the_backend_connection() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    for i in 0..5 {
        write_all(
            &mut s,
            format!("GET /r{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .await;
        let r = read_http(&mut s, false).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("b /r{i}").as_str())
        );
        assert_eq!(r.header("connection"), None, "kept alive: {r:?}");
    }
    // A second client connection, one after the other: the idle backend connection again.
    let mut s2 = tls_connect(p.addr).await;
    write_all(&mut s2, GET.as_bytes()).await;
    assert_eq!(read_http(&mut s2, false).await.status, 200);
    assert_eq!(
        b.connections(),
        1,
        "one backend connection for six requests"
    );
    // Pipelined: two requests in one write, two answers in order.
    write_all(
        &mut s,
        format!("{GET}GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(read_http(&mut s, false).await.body, "b /a");
    assert_eq!(read_http(&mut s, false).await.body, "b /b");
    // Connection: close from the client is honoured.
    write_all(
        &mut s,
        b"GET /c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut s, DEADLINE).await);
}

#[tokio::test]
async fn headers_forwarded_and_hop_by_hop_removed_both_ways() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    write_all(
        &mut s,
        b"GET /hop?q=1 HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Secret\r\n\
          X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic x\r\n\
          Upgrade: h2c\r\nX-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 6.6.6.6\r\nCookie: a=b\r\n\r\n",
    )
    .await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.status, 200, "{r:?}");
    for gone in ["x-hop", "keep-alive"] {
        assert_eq!(r.header(gone), None, "{gone} reached the client: {r:?}");
    }
    assert_eq!(r.header("x-kept"), Some("1"));
    let seen = b.seen().pop().unwrap();
    assert_eq!(seen.target, "/hop?q=1");
    for gone in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} was forwarded: {seen:?}");
    }
    assert_eq!(seen.header("cookie"), Some("a=b"));
    assert_eq!(seen.header("host"), Some("localhost"));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("localhost"));
}

#[tokio::test]
async fn chunked_both_ways_and_head_requests() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    write_all(
        &mut s,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, "hello, world");
    // A Content-Length body on the same connection.
    write_all(
        &mut s,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.body, Digest::of(b"abc").answer());
    // HEAD: the length of what GET would send, and no body.
    write_all(&mut s, b"HEAD /x HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let r = read_http(&mut s, true).await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("4")),
        "{r:?}"
    );
    write_all(&mut s, GET.as_bytes()).await;
    assert_eq!(
        read_http(&mut s, false).await.body,
        "b /a",
        "still in step after HEAD"
    );
    // Expect: 100-continue gets its interim answer before the body is sent.
    write_all(
        &mut s,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let interim = read_http(&mut s, false).await;
    assert_eq!(interim.status, 100);
    write_all(&mut s, b"ok").await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.body, Digest::of(b"ok").answer());
    assert!(b.seen().iter().all(|h| h.header("expect").is_none()));
    assert_eq!(b.connections(), 1);
}

#[tokio::test]
async fn an_upgrade_after_plain_requests_on_one_connection() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    write_all(&mut s, GET.as_bytes()).await;
    assert_eq!(read_http(&mut s, false).await.status, 200);
    write_all(
        &mut s,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx",
    )
    .await;
    assert_eq!(read_http(&mut s, false).await.status, 200);
    // The upgrade head and the first frame in one write.
    let mut bytes = upgrade_head("/ws", "").into_bytes();
    bytes.extend(encode_frame(
        true,
        0,
        op::TEXT,
        b"after http",
        Some([1, 2, 3, 4]),
    ));
    write_all(&mut s, &bytes).await;
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("x-backend"), Some("b"));
    let f = within("echo", read_frame(&mut s)).await.unwrap();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (op::TEXT, &b"after http"[..])
    );
    assert_eq!(p.running.live_sessions(), 1);
}

#[tokio::test]
async fn refuse_routes_answer_as_before_next_to_proxy_routes() {
    let b = HttpBackend::spawn("b").await;
    let p = start_proxy(&format!(
        r#"[[pool]]
name = "p"
[[pool.backend]]
address = "{}"
[[route]]
pool = "p"
[[route]]
path_prefix = "/api"
pool = "p"
http = "proxy"
"#,
        b.addr
    ))
    .await;
    let r = raw_http(p.addr, b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(r.status, 426, "{r:?}");
    let r = raw_http(p.addr, b"POST /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(r.status, 405, "{r:?}");
    let r = raw_http(
        p.addr,
        b"GET /api/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "b /api/x"), "{r:?}");
    let r = raw_http(p.addr, b"GET /api/x HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, 400, "HTTP/1.1 without Host: {r:?}");
    assert!(r.body.contains("Host"), "{r:?}");
}

/// Each framing ambiguity is refused with its status and reason before any backend
/// sees the request, and the connection is closed.
#[tokio::test]
async fn smuggling_shapes_are_refused_before_routing() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let cases: &[(&str, u16, &str)] = &[
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            400,
            "Content-Length together with Transfer-Encoding",
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            400,
            "Content-Length together with Transfer-Encoding",
        ),
        (
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            400,
            "repeated Content-Length",
        ),
        ("Content-Length: 5, 5\r\n", 400, "repeated Content-Length"),
        (
            "Content-Length: -1\r\n",
            400,
            "Content-Length must be a decimal number",
        ),
        (
            "X-Folded: a\r\n b\r\nContent-Length: 5\r\n",
            400,
            "obs-fold",
        ),
        (
            "Transfer-Encoding: gzip, chunked\r\n",
            501,
            "only Transfer-Encoding: chunked",
        ),
        (
            "Transfer-Encoding: chunked, identity\r\n",
            400,
            "must end with a single chunked",
        ),
    ];
    for (extra, status, says) in cases {
        let req = format!("POST /len HTTP/1.1\r\nHost: localhost\r\n{extra}\r\nhello");
        let mut s = tls_connect(p.addr).await;
        write_all(&mut s, req.as_bytes()).await;
        let r = read_response(&mut s).await;
        assert_eq!(r.status, *status, "{extra:?}: {r:?}");
        assert!(r.body.contains(says), "{extra:?}: {r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    }
    let r = raw_http(
        p.addr,
        b"POST /len HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("HTTP/1.0"), "{r:?}");
    // An upgrade is held to the same rules.
    let r = raw_http(
        p.addr,
        upgrade_head("/", "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(b.seen().is_empty(), "a backend saw {:?}", b.seen());
    // A malformed chunked body is found while streaming: 400 before any response.
    let r = raw_http(
        p.addr,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("chunked"), "{r:?}");
}

#[tokio::test]
async fn body_limit_413_for_content_length_and_chunked() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "max_request_body_bytes = 1000").await;
    let r = raw_http(
        p.addr,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1001\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 413, "{r:?}");
    assert!(b.seen().is_empty(), "refused before the backend was asked");
    let mut req =
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"190\r\n");
        req.extend_from_slice(&[b'x'; 400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_http(p.addr, &req).await;
    assert_eq!(r.status, 413, "{r:?}");
    let mut s = tls_connect(p.addr).await;
    let body = vec![b'y'; 1000];
    write_all(
        &mut s,
        format!(
            "POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    write_all(&mut s, &body).await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.body, Digest::of(&body).answer());
}

#[tokio::test]
async fn a_backend_answering_before_the_body_ends_gets_its_answer_through() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "max_request_body_bytes = 0").await;
    let mut s = tls_connect(p.addr).await;
    write_all(
        &mut s,
        b"POST /early HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n",
    )
    .await;
    write_all(&mut s, &vec![b'x'; 64 * 1024]).await;
    let r = read_http(&mut s, false).await;
    assert_eq!((r.status, r.body.as_str()), (413, "no thanks"), "{r:?}");
    // The rest of the body will not be read in step: the connection ends.
    assert!(closed(&mut s, DEADLINE).await);
}

#[tokio::test]
async fn plain_requests_are_counted_by_route_and_status() {
    let b = HttpBackend::spawn("b").await;
    let admin = r#"[admin]
address = "127.0.0.1:0"
"#;
    let p = proxy_to(&b, admin, "", "max_request_body_bytes = 10").await;
    let adm = p.running.admin_addr().expect("admin listener runs");
    let mut s = tls_connect(p.addr).await;
    for _ in 0..3 {
        write_all(&mut s, GET.as_bytes()).await;
        assert_eq!(read_http(&mut s, false).await.status, 200);
    }
    let too_big = b"POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(raw_http(p.addr, too_big).await.status, 413);
    // The count follows the answer's last byte: poll until the third 200 is in.
    let scrape = within("three 200s counted", async {
        loop {
            let sc = common::admin::scrape(adm).await;
            let l = [("route", "p"), ("status", "200")];
            if sc.count("wsgate_http_requests_total", &l) >= 3.0 {
                return sc;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let http = |status| {
        scrape.count(
            "wsgate_http_requests_total",
            &[("route", "p"), ("status", status)],
        )
    };
    assert_eq!(http("200"), 3.0, "{}", scrape.text);
    assert_eq!(http("413"), 1.0, "{}", scrape.text);
    // Plain requests are not upgrades.
    let up = [("route", "p"), ("status", "413")];
    assert_eq!(scrape.count("wsgate_upgrades_total", &up), 0.0);
}
