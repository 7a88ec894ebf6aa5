//! Reading one request head (request line and headers) off the wire, within a
//! size and a time limit, before Pingora sees it.
//!
//! Pingora reads the head itself, and nothing of `ProxyHttp` runs before that
//! read ends. Its limits do not fit a sidecar: up to 1 MiB in a buffer that
//! doubles as it grows, and a timeout per read rather than per head, so a
//! client dribbling a byte every few seconds keeps its connection and buffer
//! forever. So streamgate reads the head first, with its own limits, and the
//! caller hands the bytes to Pingora as the session's already-read prefix
//! (the slot Pingora fills with pipelined bytes), which Pingora parses without
//! reading again. This module only finds where a head ends; parsing it stays
//! Pingora's.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{timeout_at, Instant};

/// `http.max_request_headers_bytes` and `http.request_headers_timeout`.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// Where a head starts: how long a client may stay silent before its first
/// byte, or the bytes of it that were already read.
#[derive(Debug, Clone)]
pub(super) enum Start {
    /// A new connection: its first head, silence included, within the header
    /// timeout from accept (nginx's `client_header_timeout`), so that a
    /// connection that never sends anything does not hold a slot for long.
    WithinHeadTimeout,
    /// Between keep-alive requests: idle up to this long; the header timeout
    /// starts at the first byte (as Envoy's `request_headers_timeout`), so a
    /// client that paused between requests is not refused for it.
    Idle(Duration),
    /// Pipelined: these bytes of the head came with the previous request
    /// (Pingora read them past its body). The header timeout starts now;
    /// they count against the size limit.
    Begun(Vec<u8>),
}

/// What reading one head came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Head {
    /// The head, and whatever followed it in the same reads (body bytes).
    Complete(Vec<u8>),
    /// Nothing was sent (closed, or silent past the deadline): there is no
    /// request to answer.
    Silent,
    /// The client closed or the read failed midway: nobody to answer.
    Broken,
    /// A head the limits refuse, to be answered.
    Refused(Refusal),
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The request line alone is longer than the limit: 414 (RFC 9112 §3).
    UriTooLong,
    /// The head is longer than the limit: 431.
    TooLarge,
    /// The head did not arrive in time: 408.
    TimedOut,
}

/// First size of a head buffer, as Pingora's: most heads fit. It doubles up
/// to the limit, so a connection holds at most `max_bytes` for its head.
const INITIAL_BUFFER: usize = 4096;

/// Reads one head from `stream`.
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: HeadLimits,
    start: Start,
) -> Head {
    let (mut buffer, deadline) = match start {
        Start::Begun(bytes) => (bytes, Instant::now() + limits.timeout),
        Start::WithinHeadTimeout | Start::Idle(_) => {
            let mut buffer = Vec::with_capacity(INITIAL_BUFFER.min(limits.max_bytes));
            let first_byte_by = Instant::now()
                + match start {
                    Start::Idle(idle) => idle,
                    _ => limits.timeout,
                };
            match timeout_at(first_byte_by, read_more(stream, &mut buffer, limits)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return Head::Silent,
                Ok(Ok(_)) => {}
            }
            let deadline = match start {
                Start::Idle(_) => Instant::now() + limits.timeout,
                _ => first_byte_by,
            };
            (buffer, deadline)
        }
    };
    let mut scan = HeadScan::default();
    loop {
        match scan.end(&buffer) {
            Some(end) if end <= limits.max_bytes => return Head::Complete(buffer),
            Some(_) => return Head::Refused(Refusal::TooLarge),
            None if buffer.len() >= limits.max_bytes => {
                return Head::Refused(if scan.start.is_some() && !scan.request_line_ended {
                    Refusal::UriTooLong
                } else {
                    Refusal::TooLarge
                });
            }
            None => {}
        }
        match timeout_at(deadline, read_more(stream, &mut buffer, limits)).await {
            Ok(Ok(0) | Err(_)) => return Head::Broken,
            Ok(Ok(_)) => {}
            Err(_) => return Head::Refused(Refusal::TimedOut),
        }
    }
}

/// One read into `buffer`, grown first if full: doubled, but never past
/// the limit, so that what a connection holds stays bounded.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    limits: HeadLimits,
) -> std::io::Result<usize> {
    if buffer.len() == buffer.capacity() {
        let room = buffer.capacity().max(INITIAL_BUFFER);
        let room = room.min(limits.max_bytes.saturating_sub(buffer.len()).max(1));
        buffer.reserve_exact(room);
    }
    stream.read_buf(buffer).await
}

/// Finds where a head ends as bytes arrive, without rescanning what was
/// already scanned (a head dribbled a byte at a time costs linear time).
///
/// As httparse (Pingora's parser) does, empty lines before the request line
/// are skipped and a line may end in LF alone; the head ends at the first
/// empty line after the request line.
#[derive(Debug, Default)]
struct HeadScan {
    /// Where the request line starts, once a byte other than CR or LF came.
    start: Option<usize>,
    /// Bytes already looked at.
    scanned: usize,
    request_line_ended: bool,
}

impl HeadScan {
    /// Where the head in `bytes` ends (just past its empty line), if it does.
    fn end(&mut self, bytes: &[u8]) -> Option<usize> {
        let start = match self.start {
            Some(start) => start,
            None => {
                let found = bytes[self.scanned..]
                    .iter()
                    .position(|b| !matches!(b, b'\r' | b'\n'));
                let Some(offset) = found else {
                    self.scanned = bytes.len();
                    return None;
                };
                let start = self.scanned + offset;
                self.start = Some(start);
                self.scanned = start;
                start
            }
        };
        // Two bytes back: an `\n\r\n` split across reads is found whole.
        let from = self.scanned.saturating_sub(2).max(start);
        for at in from..bytes.len() {
            if bytes[at] != b'\n' {
                continue;
            }
            self.request_line_ended = true;
            match &bytes[at + 1..] {
                [b'\n', ..] => return Some(at + 2),
                [b'\r', b'\n', ..] => return Some(at + 3),
                _ => {}
            }
        }
        self.scanned = bytes.len();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn end_of(chunks: &[&[u8]]) -> Option<usize> {
        let mut scan = HeadScan::default();
        let mut bytes = Vec::new();
        let mut end = None;
        for chunk in chunks {
            bytes.extend_from_slice(chunk);
            end = scan.end(&bytes);
        }
        end
    }

    #[test]
    fn the_head_ends_at_its_first_empty_line() {
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(end_of(&[request]), Some(request.len() - 4));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\nHost: a\n\nrest"]), Some(24));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]), None);
    }

    #[test]
    fn empty_lines_before_the_request_line_are_skipped() {
        assert_eq!(end_of(&[b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"]), Some(22));
        assert_eq!(end_of(&[b"\r\n\r\n", b"\r\n"]), None);
    }

    #[test]
    fn a_head_split_anywhere_is_found_once_whole() {
        let request: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        for cut in 1..request.len() {
            let (a, b) = request.split_at(cut);
            assert_eq!(end_of(&[a, b]), Some(request.len()), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = request.chunks(1).collect();
        assert_eq!(end_of(&bytes), Some(request.len()));
    }

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 64,
        timeout: Duration::from_secs(5),
    };

    async fn read(input: &[u8], limits: HeadLimits) -> Head {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(input).await.unwrap();
        drop(client);
        read_head(&mut server, limits, Start::WithinHeadTimeout).await
    }

    #[tokio::test]
    async fn a_head_within_the_limit_is_read_with_what_follows() {
        let request = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            read(request, LIMITS).await,
            Head::Complete(request.to_vec())
        );
    }

    #[tokio::test]
    async fn a_head_past_the_limit_is_too_large() {
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(64));
        assert_eq!(
            read(long_header.as_bytes(), LIMITS).await,
            Head::Refused(Refusal::TooLarge)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(12));
        assert_eq!(
            read(many.as_bytes(), LIMITS).await,
            Head::Refused(Refusal::TooLarge)
        );
        // Exactly the limit is allowed.
        let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(41));
        assert_eq!(exact.len(), 64);
        assert!(matches!(
            read(exact.as_bytes(), LIMITS).await,
            Head::Complete(_)
        ));
    }

    #[tokio::test]
    async fn a_request_line_past_the_limit_is_a_uri_too_long() {
        let long_uri = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64));
        assert_eq!(
            read(long_uri.as_bytes(), LIMITS).await,
            Head::Refused(Refusal::UriTooLong)
        );
    }

    #[tokio::test]
    async fn closing_midway_or_before_a_byte() {
        assert_eq!(read(b"GET / HT", LIMITS).await, Head::Broken);
        assert_eq!(read(b"", LIMITS).await, Head::Silent);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_times_out_and_silence_is_not_answered() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let head = read_head(&mut server, LIMITS, Start::WithinHeadTimeout).await;
        assert_eq!(head, Head::Refused(Refusal::TimedOut));
        let (_client, mut server) = tokio::io::duplex(1024);
        let head = read_head(&mut server, LIMITS, Start::WithinHeadTimeout).await;
        assert_eq!(head, Head::Silent);
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_header_timeout_starts_at_the_first_byte() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let idle = Start::Idle(Duration::from_secs(60));
        let first = idle.clone();
        let reader = tokio::spawn(async move { read_head(&mut server, LIMITS, first).await });
        // Idle for longer than the header timeout, then a prompt head.
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(reader.await.unwrap(), Head::Complete(_)));

        let (mut client, mut server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move { read_head(&mut server, LIMITS, idle).await });
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(reader.await.unwrap(), Head::Refused(Refusal::TimedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_in_pipelined_bytes_is_held_to_the_same_limits() {
        let begun = || Start::Begun(b"GET /next HTTP/1.1\r\n".to_vec());
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"Host: a\r\n\r\n").await.unwrap();
        assert_eq!(
            read_head(&mut server, LIMITS, begun()).await,
            Head::Complete(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n".to_vec())
        );

        // The bytes already read count: 20 of them leave room for 44 more.
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&[b'a'; 50]).await.unwrap();
        let head = read_head(&mut server, LIMITS, begun()).await;
        assert_eq!(head, Head::Refused(Refusal::TooLarge));

        // No silence is allowed first: the head has begun, its timeout runs.
        let (_client, mut server) = tokio::io::duplex(1024);
        let head = read_head(&mut server, LIMITS, begun()).await;
        assert_eq!(head, Head::Refused(Refusal::TimedOut));

        // Pipelined bytes that hold a whole head are not read past.
        let (_client, mut server) = tokio::io::duplex(1024);
        let whole = b"GET / HTTP/1.1\r\n\r\nGET /".to_vec();
        let head = read_head(&mut server, LIMITS, Start::Begun(whole.clone())).await;
        assert_eq!(head, Head::Complete(whole));
    }
}
