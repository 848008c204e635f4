//! Interop backend for tests/interop (tokio-tungstenite), speaking the command
//! protocol of tests/interop/README.md, or (with `--plain-echo`) wsgate's own
//! src/echo.rs unchanged.
//!
//! Usage: interop_backend --port PORT --name NAME [--plain-echo]
//!
//! tungstenite 0.30 has no permessage-deflate, so `cmd:ext` answers
//! `ext-unsupported:...`; fragments are written as raw frames (`Message::Frame`).

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};

const PING_PAYLOAD: &[u8] = b"ping-b2c";

struct Args {
    port: u16,
    name: String,
    plain_echo: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut port, mut name, mut plain_echo) = (None, None, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => port = it.next().and_then(|p| p.parse().ok()),
            "--name" => name = it.next(),
            "--plain-echo" => plain_echo = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        port: port.ok_or("--port PORT is required")?,
        name: name.ok_or("--name NAME is required")?,
        plain_echo,
    })
}

/// The text of `cmd:fragment`, as its 3 frames.
fn fragment_parts() -> [String; 3] {
    [
        format!("frag1:{}", "x".repeat(9994)),
        format!("frag2:{}", "x".repeat(9994)),
        format!("frag3:{}", "x".repeat(994)),
    ]
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "interop_backend: {e}\nusage: interop_backend --port PORT --name NAME [--plain-echo]"
            );
            std::process::exit(2);
        }
    };
    let addr: SocketAddr = ([127, 0, 0, 1], args.port).into();
    if args.plain_echo {
        let _server = wsgate::echo::EchoServer::spawn(addr, &args.name)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
        eprintln!("interop_backend: wsgate echo {} on {addr}", args.name);
        std::future::pending::<()>().await;
    }
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
    eprintln!("interop_backend: tungstenite {} on {addr}", args.name);
    loop {
        if let Ok((s, _)) = listener.accept().await {
            tokio::spawn(session(s, args.name.clone()));
        }
    }
}

#[allow(clippy::result_large_err)] // the callback signature is tungstenite's
async fn session(stream: TcpStream, name: String) {
    let _ = stream.set_nodelay(true);
    let callback = |req: &Request, mut resp: Response| {
        let chat = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "chat");
        if chat {
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let mut awaiting_pong = false;
    while let Some(Ok(msg)) = ws.next().await {
        let result = match msg {
            Message::Text(t) if t.as_str().starts_with("cmd:") => {
                let cmd = t.as_str();
                if cmd == "cmd:who" {
                    ws.send(Message::text(format!("who:{name}"))).await
                } else if cmd == "cmd:ext" {
                    let why = "ext-unsupported:tungstenite 0.30 has no permessage-deflate";
                    ws.send(Message::text(why)).await
                } else if cmd == "cmd:fragment" {
                    send_fragments(&mut ws).await
                } else if cmd == "cmd:ping" {
                    awaiting_pong = true;
                    ws.send(Message::Ping(PING_PAYLOAD.into())).await
                } else if let Some(rest) = cmd.strip_prefix("cmd:close:") {
                    let (code, reason) = rest.split_once(':').unwrap_or((rest, ""));
                    let frame = CloseFrame {
                        code: CloseCode::from(code.parse::<u16>().unwrap_or(1000)),
                        reason: reason.to_string().into(),
                    };
                    ws.close(Some(frame)).await
                } else {
                    ws.send(Message::Text(t)).await
                }
            }
            Message::Text(_) | Message::Binary(_) => ws.send(msg).await,
            Message::Pong(p) if awaiting_pong && p.as_ref() == PING_PAYLOAD => {
                awaiting_pong = false;
                ws.send(Message::text("pong-ok")).await
            }
            // tungstenite answers pings and echoes the Close by itself.
            _ => Ok(()),
        };
        if result.is_err() {
            break;
        }
    }
}

async fn send_fragments(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let [a, b, c] = fragment_parts();
    ws.feed(Message::Frame(Frame::message(
        a,
        OpCode::Data(Data::Text),
        false,
    )))
    .await?;
    ws.feed(Message::Frame(Frame::message(
        b,
        OpCode::Data(Data::Continue),
        false,
    )))
    .await?;
    ws.send(Message::Frame(Frame::message(
        c,
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
}
