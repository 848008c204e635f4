//! What both request paths of a client connection share: the connection's context
//! (`ConnCtx`), its two halves and read buffer (`Conn`), writing wsgate's final answer
//! on it, and the header rules both paths apply (`identity_headers`, `single`,
//! `reply_for`).
//!
//! Owns: nothing that decides what a request means. Does not own: the connection loop
//! (serve.rs), upgrades (upgrade.rs) or plain requests (forward.rs).

use super::handshake::has_token;
use super::write::{self, Reply};
use crate::accept::admission::Admitted;
use crate::conn::ConnInfo;
use crate::refusal::Body;
use crate::runtime::{Generation, Runtime};
use bytes::BytesMut;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Response, Version};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::timeout;

/// One admitted client connection: who it is, the generation its current request
/// runs under, and the process state.
#[derive(Debug)]
pub struct ConnCtx {
    pub info: ConnInfo,
    pub generation: Arc<Generation>,
    pub rt: Arc<Runtime>,
    pub admitted: Arc<Admitted>,
}

/// A client connection: its two halves and the bytes read but not used yet.
pub struct Conn<IO> {
    pub rd: ReadHalf<IO>,
    pub wr: WriteHalf<IO>,
    pub buf: BytesMut,
}

/// Writing one of wsgate's own answers (or a backend's refusal) may take this long.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes an answer after which the connection closes (bounded by `ANSWER_TIMEOUT`).
pub async fn respond_and_close<IO: AsyncWrite>(
    c: &mut Conn<IO>,
    resp: Response<Body>,
    reply: Reply,
) {
    respond_and_close_on(&mut c.wr, resp, reply).await
}

/// `respond_and_close`, on the connection's writing half.
pub async fn respond_and_close_on<W: AsyncWrite + Unpin>(
    w: &mut W,
    resp: Response<Body>,
    reply: Reply,
) {
    let reply = Reply {
        close: true,
        ..reply
    };
    let _ = timeout(
        ANSWER_TIMEOUT,
        write::write_response(w, resp, reply, Some(ANSWER_TIMEOUT)),
    )
    .await;
}

/// The reply settings for the request `req`.
pub fn reply_for(req: &hyper::Request<()>, close: bool) -> Reply {
    let http11 = req.version() == Version::HTTP_11;
    Reply {
        head_request: req.method() == Method::HEAD,
        http11,
        close: close || !http11 || has_token(req.headers(), &header::CONNECTION, "close"),
    }
}

/// The value of a header that appears exactly once.
pub fn single<'a>(h: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    let mut all = h.get_all(name).iter();
    let first = all.next()?;
    all.next()
        .is_none()
        .then_some(first)
        .and_then(|v| v.to_str().ok())
}

/// The request's headers as the backend gets them: every identity header
/// (claim headers of any route, client-subject headers of any listener) removed,
/// then the ones this request earned (`grant`'s claims, this listener's verified
/// client-certificate subject) set. Used by upgrades and plain requests alike.
pub fn identity_headers<'a>(
    headers: &'a HeaderMap,
    client: &ConnCtx,
    grant: Option<&crate::route::auth::Grant>,
) -> std::borrow::Cow<'a, HeaderMap> {
    let listener = client.generation.listener(&client.info.listener);
    let subject = listener
        .and_then(|l| l.client_subject_header.as_ref())
        .zip(client.info.client_subject.as_deref());
    crate::route::auth::backend_headers(
        headers,
        &client.generation.identity_headers,
        grant,
        subject,
    )
}
