//! Connections over time: each timeout, retries, a backend closing its idle
//! connection, shutdown, reload, a slow response, the idle keep-alive sweep.

use super::*;

#[tokio::test]
async fn each_timeout_has_its_own_setting() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(
        &b,
        r#"[server]
header_read_timeout = "400ms"
keepalive_timeout = "1500ms"
request_body_timeout = "400ms"
"#,
        r#"response_timeout = "400ms"
max_fails = 0"#,
        "",
    )
    .await;
    // Request body: 5 of 10 bytes, then nothing.
    let mut s = tls_connect(p.addr).await;
    write_all(
        &mut s,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello",
    )
    .await;
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.body.contains("body"), "{r:?}");
    // Backend response head: too slow.
    let mut s = tls_connect(p.addr).await;
    write_all(
        &mut s,
        b"GET /slow?ms=3000 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 504, "{r:?}");
    // Keep-alive idle: a kept-alive connection lives past header_read_timeout while
    // idle, then closes silently at keepalive_timeout.
    let mut s = tls_connect(p.addr).await;
    write_all(&mut s, GET.as_bytes()).await;
    assert_eq!(read_http(&mut s, false).await.status, 200);
    let idle_from = Instant::now();
    assert!(
        !closed(&mut s, Duration::from_millis(800)).await,
        "closed before keepalive_timeout"
    );
    assert!(closed(&mut s, DEADLINE).await);
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(1400), "closed after {idle:?}");
    // The next head on a kept-alive connection: 408 once it has started and stalled.
    let mut s = tls_connect(p.addr).await;
    write_all(&mut s, GET.as_bytes()).await;
    assert_eq!(read_http(&mut s, false).await.status, 200);
    write_all(&mut s, b"GET /b HTTP/1.1\r\nHo").await;
    let t0 = Instant::now();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(1400),
        "408 by header_read_timeout, not keepalive_timeout"
    );
}

/// A backend that reads a request and closes without answering.
async fn black_hole() -> RawBackend {
    raw_backend(|_, s| async move {
        drop(s);
    })
    .await
}

#[tokio::test]
async fn only_get_and_head_are_retried_once_sent() {
    let hole = black_hole().await;
    let good = HttpBackend::spawn("good").await;
    // max_fails = 0: the broken backend stays in the rotation; round robin tries it first.
    let p = start_proxy(&format!(
        r#"[[pool]]
name = "p"
max_fails = 0
retries = 1
keepalive = 0
[[pool.backend]]
address = "{}"
[[pool.backend]]
address = "{}"
[[route]]
pool = "p"
http = "proxy"
"#,
        hole.addr, good.addr
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = raw_http(
            p.addr,
            b"GET /g HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200; 4], "every GET lands on the good backend");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = raw_http(
            p.addr,
            b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        )
        .await;
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 200, 502, 502],
        "a sent POST is never sent again"
    );
}

#[tokio::test]
async fn a_request_that_never_left_is_retried_whatever_its_method() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let good = HttpBackend::spawn("good").await;
    let p = start_proxy(&format!(
        r#"[[pool]]
name = "p"
max_fails = 0
retries = 1
[[pool.backend]]
address = "{closed_port}"
[[pool.backend]]
address = "{}"
[[route]]
pool = "p"
http = "proxy"
"#,
        good.addr
    ))
    .await;
    for _ in 0..4 {
        let r = raw_http(
            p.addr,
            b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
}

#[tokio::test]
async fn a_backend_closing_its_idle_connection_costs_no_request() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    // /close: the backend ends that connection after answering; the next request
    // (a POST, which may not be sent twice) must go out on a fresh one.
    write_all(&mut s, b"GET /close HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(read_http(&mut s, false).await.body, "bye");
    write_all(
        &mut s,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nz",
    )
    .await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(b.connections(), 2);
}

#[tokio::test]
async fn shutdown_closes_idle_kept_alive_connections_at_once() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    write_all(&mut s, GET.as_bytes()).await;
    assert_eq!(read_http(&mut s, false).await.status, 200);
    let t0 = Instant::now();
    let left = within("shutdown", p.running.shutdown()).await;
    assert_eq!(left, 0, "connections left open");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?}",
        t0.elapsed()
    );
    assert!(closed(&mut s, DEADLINE).await);
}

#[tokio::test]
async fn a_kept_alive_connection_follows_a_reload() {
    let a = HttpBackend::spawn("a").await;
    let b = HttpBackend::spawn("b").await;
    let mut p = proxy_to(&a, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    write_all(&mut s, GET.as_bytes()).await;
    assert_eq!(read_http(&mut s, false).await.body, "a /a");
    let text = config_text(&http_pool("p", "round_robin", &[b.addr], "", ""));
    let cfg = wsgate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    p.running.reload(&cfg).await.unwrap();
    write_all(&mut s, GET.as_bytes()).await;
    assert_eq!(
        read_http(&mut s, false).await.body,
        "b /a",
        "the next request runs under the new routes"
    );
}

#[tokio::test]
async fn the_next_request_waits_for_a_slow_response_on_its_connection() {
    // Keep-alive never lets a second request overtake the first on one connection.
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", "", "").await;
    let mut s = tls_connect(p.addr).await;
    s.write_all(b"GET /slow?ms=300 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /fast HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    s.flush().await.unwrap();
    assert_eq!(read_http(&mut s, false).await.body, "slow");
    assert_eq!(read_http(&mut s, false).await.body, "b /fast");
}

#[tokio::test]
async fn idle_backend_connections_close_after_keepalive_timeout() {
    let b = HttpBackend::spawn("b").await;
    let p = proxy_to(&b, "", r#"keepalive_timeout = "300ms""#, "").await;
    let r = raw_http(
        p.addr,
        b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(b.open_connections(), 1, "kept for reuse");
    // Closed by the once-a-second sweep, not by the backend (which has no idle limit).
    within("the idle backend connection to close", async {
        while b.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let idle = p.running.pool("p").unwrap().backends[0].idle.len();
    assert_eq!(idle, 0);
}
