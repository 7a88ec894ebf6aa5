//! HTTP/1.1 as bytes, on both sides of streamgate: a client that writes
//! exactly what a test says (malformed requests, pipelining, odd spellings)
//! and reads the answers one by one, and an upstream that records the exact
//! bytes of every request it receives. Blocking, on std sockets, so that they
//! work from sync and async tests alike and nothing normalizes the bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One response as read from the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        header_values(&self.head, name)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn header_values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// A client connection that writes raw bytes.
pub struct RawClient {
    stream: TcpStream,
    /// Bytes read but not yet returned as a response.
    pending: Vec<u8>,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to streamgate");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        RawClient {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.stream
            .write_all(bytes.as_ref())
            .expect("write request");
        self
    }

    /// Reads more into `pending`; false once the peer closed.
    fn fill(&mut self, deadline: Instant) -> bool {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.extend_from_slice(&buffer[..n]);
                    return true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// The next complete response within `limit`, or `None` if the connection
    /// closed (or nothing complete arrived) first. Interim `1xx` responses are
    /// returned like any other.
    pub fn response_within(&mut self, limit: Duration) -> Option<RawResponse> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((response, used)) = parse_response(&self.pending) {
                self.pending.drain(..used);
                return Some(response);
            }
            if !self.fill(deadline) {
                return parse_response(&self.pending).map(|(response, used)| {
                    self.pending.drain(..used);
                    response
                });
            }
        }
    }

    /// The next response, waiting up to 5 s; panics when none comes.
    pub fn response(&mut self) -> RawResponse {
        self.response_within(Duration::from_secs(5))
            .expect("a complete response")
    }

    /// The next `len` raw bytes (an upgraded connection's), or fewer when the
    /// connection closed or `limit` passed first.
    pub fn read_within(&mut self, len: usize, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        while self.pending.len() < len && self.fill(deadline) {}
        let take = len.min(self.pending.len());
        self.pending.drain(..take).collect()
    }

    /// Whether the server closed the connection within `limit` (after any
    /// responses still unread, which are discarded).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut buffer = [0u8; 4096];
            match self.stream.read(&mut buffer) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// One response at the start of `bytes`, and how many bytes it took.
pub fn parse_response(bytes: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = find(bytes, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end - 4]).into_owned();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let (body, used) = if no_body {
        (Vec::new(), head_end)
    } else {
        read_body(&head, &bytes[head_end..], true).map(|(body, used)| (body, head_end + used))?
    };
    Some((RawResponse { status, head, body }, used))
}

/// A message body framed by `head`: its decoded bytes and how many raw bytes
/// it took. Without Content-Length or chunked, a response body runs to the end
/// of what was read (`to_close`), a request has none.
fn read_body(head: &str, rest: &[u8], to_close: bool) -> Option<(Vec<u8>, usize)> {
    let chunked = header_values(head, "transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = find(&rest[at..], b"\r\n")? + at;
            let size_text = String::from_utf8_lossy(&rest[at..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                let end = find(&rest[at..], b"\r\n")? + at + 2;
                return Some((body, end));
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size + 2;
        }
    }
    match header_values(head, "content-length").first() {
        Some(length) => {
            let length: usize = length.parse().ok()?;
            Some((rest.get(..length)?.to_vec(), length))
        }
        None if to_close => Some((rest.to_vec(), rest.len())),
        None => Some((Vec::new(), 0)),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request line and headers, exactly as received.
    pub head: String,
    /// The body after de-chunking.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// `GET /p?x=1 HTTP/1.1`
    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or_default()
    }

    /// The request target (`/p?x=1`).
    pub fn target(&self) -> &str {
        self.request_line().split(' ').nth(1).unwrap_or_default()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        header_values(&self.head, name)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Header names exactly as spelled on the wire.
    pub fn header_names(&self) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':').map(|(n, _)| n.to_string()))
            .collect()
    }
}

/// An upstream that records every request's bytes and answers each with
/// `200 OK` and the body `ok`, keeping connections alive; a request that
/// expects 100-continue is sent `100 Continue` first.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl RecordingUpstream {
    pub fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recording upstream");
        let addr = listener.local_addr().expect("upstream address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        RecordingUpstream { addr, requests }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("request log").clone()
    }

    /// The last request received, waiting up to 5 s for one.
    pub fn last(&self) -> RecordedRequest {
        super::wait::poll(Duration::from_secs(5), || self.requests().pop())
            .expect("the upstream received a request")
    }
}

fn serve(mut stream: TcpStream, log: &Mutex<Vec<RecordedRequest>>) {
    let mut pending = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    // Whether the request at the start of `pending` was sent its 100 Continue.
    let mut continued = false;
    loop {
        while let Some(head_end) = find(&pending, b"\r\n\r\n").map(|i| i + 4) {
            let head = String::from_utf8_lossy(&pending[..head_end - 4]).into_owned();
            let Some((body, used)) = read_body(&head, &pending[head_end..], false) else {
                // As an origin server does (RFC 9110 §10.1.1): a client that
                // expects 100-continue waits for it before sending the body.
                let expects = header_values(&head, "expect")
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case("100-continue"));
                if expects && !continued {
                    continued = true;
                    if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                        return;
                    }
                }
                break;
            };
            continued = false;
            pending.drain(..head_end + used);
            let upgrade = header_values(&head, "upgrade").first().cloned();
            log.lock()
                .expect("request log")
                .push(RecordedRequest { head, body });
            let answer: &[u8] = match upgrade {
                Some(_) => b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                None => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
            };
            if stream.write_all(answer).is_err() {
                return;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buffer[..n]),
        }
    }
}
