//! The HTTP answers wsgate gives when it refuses a request itself: a status and a
//! one-line plain-text reason, always with `Connection: close` (after a refusal the
//! connection is not reused, kept alive or not).
//!
//! Owns: `Refusal` (every reason a request is answered here, with its status, its
//! text and the headers the status calls for) and the response body type shared
//! with the backend answers passed through (http/upgrade.rs).

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// Response bodies: our own short texts, or a backend's answer streamed through.
pub(crate) type Body = Either<Full<Bytes>, hyper::body::Incoming>;

/// Why wsgate answers a request itself instead of proxying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    MethodNotAllowed,
    OldHttpVersion,
    NotWebSocket,
    MissingHost,
    ConnectionNotUpgrade,
    BadKey,
    UnsupportedVersion,
    HasBody,
    NoRoute,
    OriginMissing,
    OriginNotAllowed,
    /// The route's token check failed (`[route.auth]`): a one-line reason, and the
    /// RFC 6750 error code for `WWW-Authenticate` (none when no token was sent).
    Unauthorized {
        reason: &'static str,
        error: Option<&'static str>,
    },
    HeaderTimeout,
    HeaderTooLarge,
    /// The backend could not be reached or did not upgrade properly.
    BadGateway(String),
    /// Every backend of the pool is down.
    NoBackend,
    /// No backend answered within `upstream_deadline`.
    GatewayTimeout,
    /// wsgate itself could not open a backend connection: no ephemeral port left
    /// toward the backend's address, or no descriptor, socket buffer or memory. Not
    /// the backend's fault, and not held against it.
    LocalExhaustion,
    // --- The request head (any request, before routing): RFC 9112's framing rules.
    LengthWithTransferEncoding,
    RepeatedContentLength,
    BadContentLength,
    ObsFold,
    /// Transfer-Encoding that does not end in exactly one `chunked`.
    BadTransferEncoding,
    /// A transfer coding besides `chunked` (gzip, ...): 501.
    UnsupportedTransferEncoding,
    TransferEncodingHttp10,
    /// A head httparse cannot read, with what was wrong.
    MalformedHead(&'static str),
    /// `*` or authority-form (OPTIONS *, CONNECT).
    BadTarget,
    /// Not HTTP/1.0 or HTTP/1.1.
    UnsupportedHttpVersion,
    // --- Proxied plain HTTP.
    BodyTooLarge,
    BodyTimeout,
    /// The body came slower than `request_body_min_rate`.
    BodyTooSlow,
    BadChunkedBody,
    /// The backend's response head did not come within `response_timeout`.
    ResponseTimeout,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OldHttpVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            NotWebSocket | UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            MissingHost | ConnectionNotUpgrade | BadKey | HasBody => StatusCode::BAD_REQUEST,
            NoRoute => StatusCode::NOT_FOUND,
            OriginMissing | OriginNotAllowed => StatusCode::FORBIDDEN,
            Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            BadGateway(_) => StatusCode::BAD_GATEWAY,
            NoBackend | LocalExhaustion => StatusCode::SERVICE_UNAVAILABLE,
            GatewayTimeout | ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            LengthWithTransferEncoding
            | RepeatedContentLength
            | BadContentLength
            | ObsFold
            | BadTransferEncoding
            | TransferEncodingHttp10
            | MalformedHead(_)
            | BadTarget
            | BadChunkedBody => StatusCode::BAD_REQUEST,
            UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            UnsupportedHttpVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout | BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub fn reason(&self) -> &str {
        use Refusal::*;
        match self {
            MethodNotAllowed => "WebSocket upgrades must use GET",
            OldHttpVersion => "WebSocket upgrades need HTTP/1.1 or later",
            NotWebSocket => "this endpoint only accepts WebSocket upgrades",
            MissingHost => "missing or repeated Host header",
            ConnectionNotUpgrade => "Connection header must contain the token \"upgrade\"",
            BadKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            UnsupportedVersion => "unsupported Sec-WebSocket-Version (only 13 is supported)",
            HasBody => "an upgrade request must not have a body",
            NoRoute => "no route for this host and path",
            OriginMissing => "Origin header required",
            OriginNotAllowed => "Origin not allowed",
            Unauthorized { reason, .. } => reason,
            HeaderTimeout => "request header not received in time",
            HeaderTooLarge => "request header too large",
            BadGateway(r) => r,
            NoBackend => "no healthy backend",
            GatewayTimeout => "no backend answered in time",
            LocalExhaustion => {
                "wsgate is out of local resources (ports or file descriptors) to reach the backend; try again later"
            }
            LengthWithTransferEncoding => {
                "Content-Length together with Transfer-Encoding is not accepted"
            }
            RepeatedContentLength => "repeated Content-Length is not accepted",
            BadContentLength => "Content-Length must be a decimal number",
            ObsFold => "header line folding (obs-fold) is not accepted",
            BadTransferEncoding => "Transfer-Encoding must end with a single chunked",
            UnsupportedTransferEncoding => "only Transfer-Encoding: chunked is supported",
            TransferEncodingHttp10 => "Transfer-Encoding is not allowed in HTTP/1.0",
            MalformedHead(why) => why,
            BadTarget => "the request target must be a path or an http(s) URL",
            UnsupportedHttpVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            BodyTooLarge => "request body too large",
            BodyTimeout => "request body not received in time",
            BodyTooSlow => "request body arrived too slowly (under request_body_min_rate)",
            BadChunkedBody => "malformed chunked request body",
            ResponseTimeout => "the backend did not answer in time",
        }
    }

    /// The full HTTP answer: status, one line of text, and the headers the status calls for.
    pub fn response(&self) -> Response<Body> {
        let mut resp = text_response(self.status(), self.reason());
        let h = resp.headers_mut();
        match self {
            Refusal::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            Refusal::NotWebSocket => {
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(
                    header::CONNECTION,
                    HeaderValue::from_static("Upgrade, close"),
                );
            }
            Refusal::UnsupportedVersion => {
                h.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            Refusal::Unauthorized { reason, error } => {
                let v = match error {
                    Some(e) => {
                        let quoted = reason.replace('\\', "\\\\").replace('"', "\\\"");
                        format!("Bearer error=\"{e}\", error_description=\"{quoted}\"")
                    }
                    None => "Bearer".to_string(),
                };
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Refusal::NoBackend | Refusal::LocalExhaustion => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        resp
    }
}

/// A plain-text answer that also closes the connection.
pub(crate) fn text_response(status: StatusCode, line: &str) -> Response<Body> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(format!("{line}\n")))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
