//! Interop client for tests/interop: tokio-tungstenite over tokio-rustls, trusting
//! only the given CA. Runs the checks of tests/interop/README.md, one connection
//! each, and prints `CHECK name PASS|FAIL|NA reason` per check.
//!
//! Usage: interop_client --port PORT --ca CA_PEM [--path /]

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};

type Ws = WebSocketStream<TlsStream<TcpStream>>;
type Outcome = Result<(&'static str, String), String>; // Ok((PASS|NA, why)) or Err(why)

const TIMEOUT: Duration = Duration::from_secs(10);
const NO_DEFLATE: &str = "tungstenite 0.30 has no permessage-deflate";

struct Client {
    port: u16,
    path: String,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    async fn connect(
        &self,
    ) -> Result<
        (
            Ws,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        String,
    > {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("tcp connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("127.0.0.1").expect("an IP is a server name");
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let url = format!("wss://127.0.0.1:{}{}", self.port, self.path);
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        tokio_tungstenite::client_async_with_config(req, tls, Some(cfg))
            .await
            .map_err(|e| format!("handshake: {e}"))
    }
}

/// The next data message or Close, skipping pings/pongs; errors on timeout or end.
async fn next_msg(ws: &mut Ws) -> Result<Message, String> {
    loop {
        let m = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .map_err(|_| "timed out waiting for a message".to_string())?;
        match m {
            None => return Err("connection ended".into()),
            Some(Err(e)) => return Err(format!("read: {e}")),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Ok(m),
        }
    }
}

async fn send(ws: &mut Ws, m: Message) -> Result<(), String> {
    ws.send(m).await.map_err(|e| format!("send: {e}"))
}

async fn ask(ws: &mut Ws, cmd: &str) -> Result<Message, String> {
    send(ws, Message::text(cmd)).await?;
    next_msg(ws).await
}

/// `Some(reason)` when the backend has no command protocol (`cmd:who` echoed back).
async fn plain_echo(ws: &mut Ws) -> Result<Option<String>, String> {
    match ask(ws, "cmd:who").await? {
        Message::Text(t) if t.as_str() == "cmd:who" => Ok(Some(
            "backend has no command protocol (wsgate's own src/echo.rs)".into(),
        )),
        Message::Text(t) if t.as_str().starts_with("who:") => Ok(None),
        other => Err(format!("unexpected answer to cmd:who: {other:?}")),
    }
}

fn expected_fragment_text() -> String {
    format!(
        "frag1:{}frag2:{}frag3:{}",
        "x".repeat(9994),
        "x".repeat(9994),
        "x".repeat(994)
    )
}

fn close_of(m: &Message) -> Option<(u16, String)> {
    match m {
        Message::Close(Some(f)) => Some((u16::from(f.code), f.reason.to_string())),
        Message::Close(None) => Some((1005, String::new())),
        _ => None,
    }
}

#[expect(clippy::too_many_lines, reason = "a table: one arm per interop check")]
async fn run_check(c: &Client, name: &str) -> Outcome {
    let (mut ws, resp) = c.connect().await?;
    let pass = |why: String| Ok(("PASS", why));
    let out: Outcome = match name {
        "text" => {
            let s = "héllo wsgate ✓";
            match ask(&mut ws, s).await? {
                Message::Text(t) if t.as_str() == s => pass("non-ASCII text echoed".into()),
                other => Err(format!("got {other:?}")),
            }
        }
        "binary" => {
            let b: Vec<u8> = (0..=255u8).collect();
            send(&mut ws, Message::binary(b.clone())).await?;
            match next_msg(&mut ws).await? {
                Message::Binary(r) if r.as_ref() == b.as_slice() => pass("256 bytes echoed".into()),
                other => Err(format!("got {:?}", other.len())),
            }
        }
        "big_1mib" => {
            let b: Vec<u8> = (0..1usize << 20)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            send(&mut ws, Message::binary(b.clone())).await?;
            match next_msg(&mut ws).await? {
                Message::Binary(r) if r.as_ref() == b.as_slice() => {
                    pass("1048576 bytes echoed".into())
                }
                other => Err(format!("got {} bytes", other.len())),
            }
        }
        "frag_c2b" => {
            let parts = ["c2b-one|", "c2b-two|", "c2b-three"];
            ws.feed(Message::Frame(Frame::message(
                parts[0],
                OpCode::Data(Data::Text),
                false,
            )))
            .await
            .map_err(|e| e.to_string())?;
            ws.feed(Message::Frame(Frame::message(
                parts[1],
                OpCode::Data(Data::Continue),
                false,
            )))
            .await
            .map_err(|e| e.to_string())?;
            send(
                &mut ws,
                Message::Frame(Frame::message(parts[2], OpCode::Data(Data::Continue), true)),
            )
            .await?;
            match next_msg(&mut ws).await? {
                Message::Text(t) if t.as_str() == parts.concat() => {
                    pass("3 raw frames sent, echoed whole".into())
                }
                other => Err(format!("got {other:?}")),
            }
        }
        "frag_b2c" => match plain_echo(&mut ws).await? {
            Some(why) => Ok(("NA", why)),
            None => match ask(&mut ws, "cmd:fragment").await? {
                Message::Text(t) if t.as_str() == expected_fragment_text() => {
                    pass("reassembled text exact (tungstenite hides frames)".into())
                }
                Message::Text(t) if t.as_str().starts_with("fragment-unsupported:") => {
                    Ok(("NA", t.as_str()[21..].to_string()))
                }
                other => Err(format!("got {} bytes", other.len())),
            },
        },
        "ping_c2b" => {
            send(&mut ws, Message::Ping("ping-c2b".into())).await?;
            loop {
                let m = tokio::time::timeout(TIMEOUT, ws.next())
                    .await
                    .map_err(|_| "no pong".to_string())?;
                match m {
                    Some(Ok(Message::Pong(p))) if p.as_ref() == b"ping-c2b" => {
                        break pass("pong with payload ping-c2b".into());
                    }
                    Some(Ok(Message::Pong(p))) => break Err(format!("pong payload {p:?}")),
                    Some(Ok(_)) => continue,
                    other => break Err(format!("got {other:?}")),
                }
            }
        }
        "ping_b2c" => match plain_echo(&mut ws).await? {
            Some(why) => Ok(("NA", why)),
            None => match ask(&mut ws, "cmd:ping").await? {
                Message::Text(t) if t.as_str() == "pong-ok" => pass("backend got our pong".into()),
                other => Err(format!("got {other:?}")),
            },
        },
        "subprotocol" => match resp.headers().get("sec-websocket-protocol") {
            Some(v) if v == "chat" => pass("chat selected".into()),
            other => Err(format!("selected {other:?}")),
        },
        "deflate" => {
            // tungstenite never offers it, so say what the backend would have done.
            let backend = match plain_echo(&mut ws).await? {
                Some(_) => "src/echo.rs has none either".to_string(),
                None => match ask(&mut ws, "cmd:ext").await? {
                    Message::Text(t) => match t.as_str().strip_prefix("ext:") {
                        Some(v) => format!("negotiated '{v}'"),
                        None => t
                            .as_str()
                            .trim_start_matches("ext-unsupported:")
                            .to_string(),
                    },
                    other => format!("{other:?}"),
                },
            };
            Ok((
                "NA",
                format!("client: {NO_DEFLATE}, never offers it (backend: {backend})"),
            ))
        }
        "close_c2b" => {
            let frame = CloseFrame {
                code: CloseCode::from(4001),
                reason: "client-bye".into(),
            };
            send(&mut ws, Message::Close(Some(frame))).await?;
            let m = next_msg(&mut ws).await?;
            match close_of(&m) {
                Some((4001, r)) => pass(format!("Close 4001 '{r}' came back")),
                Some((code, r)) => Err(format!("got Close {code} '{r}'")),
                None => Err(format!("got {m:?}")),
            }
        }
        "close_b2c" => match plain_echo(&mut ws).await? {
            Some(why) => Ok(("NA", why)),
            None => {
                let m = ask(&mut ws, "cmd:close:4002:server-bye").await?;
                match close_of(&m) {
                    Some((4002, r)) if r == "server-bye" => pass("Close 4002 'server-bye'".into()),
                    Some((code, r)) => Err(format!("got Close {code} '{r}'")),
                    None => Err(format!("got {m:?}")),
                }
            }
        },
        other => Err(format!("unknown check {other}")),
    };
    finish(&mut ws).await;
    out
}

/// A proper end: our Close (or the answer to the backend's) goes out, then read until
/// the backend's Close and the end of the stream (bounded).
async fn finish(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

const CHECKS: [&str; 11] = [
    "text",
    "binary",
    "big_1mib",
    "frag_c2b",
    "frag_b2c",
    "ping_c2b",
    "ping_b2c",
    "subprotocol",
    "deflate",
    "close_c2b",
    "close_b2c",
];

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut port, mut ca, mut path) = (None, None, "/".to_string());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse::<u16>().ok()),
            "--ca" => ca = args.next(),
            "--path" => path = args.next().unwrap_or(path),
            _ => {}
        }
    }
    let (Some(port), Some(ca)) = (port, ca) else {
        eprintln!("usage: interop_client --port PORT --ca CA_PEM [--path /]");
        std::process::exit(2);
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).expect("CA file readable") {
        roots.add(c.expect("CA PEM parses")).expect("CA accepted");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = Client {
        port,
        path,
        tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
    };
    for name in CHECKS {
        let out = match tokio::time::timeout(3 * TIMEOUT, run_check(&client, name)).await {
            Ok(o) => o,
            Err(_) => Err("check timed out".into()),
        };
        match out {
            Ok((status, why)) => println!("CHECK {name} {status} {why}"),
            Err(why) => println!("CHECK {name} FAIL {}", why.replace('\n', " ")),
        }
    }
}
