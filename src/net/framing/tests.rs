//! The request-shape rules, one test per rule, on heads written as on the wire.

use super::*;

const LOCAL: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 0, 2, 1),
    8080,
));

/// A request head written as on the wire, parsed the way Pingora hands it over.
fn parts(raw: &str) -> Parts {
    let mut lines = raw.split("\r\n");
    let request_line: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let version = match request_line[2] {
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/2.0" => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let mut request = http::Request::builder()
        .method(request_line[0])
        .uri(Uri::try_from(request_line[1]).unwrap_or_default())
        .version(version);
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        request = request.header(name, value.trim());
    }
    request.body(()).unwrap().into_parts().0
}

fn target(raw: &str) -> &str {
    raw.split(' ').nth(1).unwrap()
}

fn check(raw: &str) -> Result<Admission, Refusal> {
    admit(Received {
        head: &parts(raw),
        target: target(raw).as_bytes(),
        raw_head: raw.as_bytes(),
        local: Some(LOCAL),
    })
}

fn with_header(line: &str) -> Result<Admission, Refusal> {
    check(&format!("POST /p HTTP/1.1\r\nHost: a\r\n{line}\r\n\r\n"))
}

#[test]
fn a_usual_request_is_admitted_unchanged() {
    for raw in [
        "GET /p?x=1 HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a:8080\r\nContent-Length: 5\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(check(raw), Ok(Admission::default()), "{raw}");
    }
}

#[test]
fn http_1_1_needs_exactly_one_valid_host() {
    let host = |value: &str| check(&format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n"));
    assert_eq!(check("GET / HTTP/1.1\r\n\r\n"), Err(Refusal::MissingHost));
    assert_eq!(
        check("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        Err(Refusal::DuplicateHost)
    );
    assert_eq!(host(""), Err(Refusal::EmptyHost));
    for invalid in ["a b", "a/b", "a:b", "a:+80", "a:99999", "user@a", ":80"] {
        assert_eq!(host(invalid), Err(Refusal::InvalidHost), "{invalid}");
    }
    for valid in [
        "a",
        "a:8080",
        "a:",
        "127.0.0.1:80",
        "[::1]:8080",
        "xn--bcher-kva.example",
    ] {
        assert_eq!(host(valid), Ok(Admission::default()), "{valid}");
    }
}

#[test]
fn http_1_0_without_host_gets_the_connection_address() {
    let admitted = check("GET /p HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(
        admitted.host,
        Some(HeaderValue::from_static("192.0.2.1:8080"))
    );
    let raw = "GET /p HTTP/1.0\r\n\r\n";
    let no_address = admit(Received {
        head: &parts(raw),
        target: b"/p",
        raw_head: raw.as_bytes(),
        local: None,
    })
    .unwrap();
    assert_eq!(no_address, Admission::default());
    assert_eq!(
        check("GET /p HTTP/1.0\r\nHost: a b\r\n\r\n"),
        Err(Refusal::InvalidHost)
    );
}

#[test]
fn absolute_form_becomes_origin_form_for_its_own_host() {
    let origin = |raw: &str| check(raw).map(|a| (a.target.map(|t| t.to_string()), a.host));
    assert_eq!(
        origin("GET http://x.test/p?x=1 HTTP/1.1\r\nHost: x.test\r\n\r\n"),
        Ok((Some("/p?x=1".into()), None))
    );
    assert_eq!(
        origin("GET https://x.test:8443 HTTP/1.1\r\nHost: x.test:8443\r\n\r\n"),
        Ok((Some("/".into()), None))
    );
    assert_eq!(
        origin("GET http://x.test?x=1 HTTP/1.1\r\nHost: x.test\r\n\r\n"),
        Ok((Some("/?x=1".into()), None))
    );
    assert_eq!(
        origin("GET http://x.test/p HTTP/1.0\r\n\r\n"),
        Ok((Some("/p".into()), Some(HeaderValue::from_static("x.test"))))
    );
    assert_eq!(
        check("GET http://x.test/p HTTP/1.1\r\nHost: y.test\r\n\r\n"),
        Err(Refusal::HostDiffersFromTarget)
    );
    assert_eq!(
        check("GET http://x.test/p HTTP/1.1\r\n\r\n"),
        Err(Refusal::MissingHost)
    );
    assert_eq!(
        check("GET ftp://x.test/p HTTP/1.1\r\nHost: x.test\r\n\r\n"),
        Err(Refusal::UnsupportedScheme)
    );
    assert_eq!(
        check("GET x.test/p HTTP/1.1\r\nHost: x.test\r\n\r\n"),
        Err(Refusal::InvalidTarget)
    );
}

#[test]
fn a_repeated_content_length_is_sent_once_and_a_conflicting_one_refused() {
    assert_eq!(
        with_header("Content-Length: 5, 5").unwrap().content_length,
        Some(5)
    );
    assert_eq!(
        with_header("Content-Length: 5\r\nContent-Length: 5")
            .unwrap()
            .content_length,
        Some(5)
    );
    assert_eq!(
        with_header("Content-Length: 5, 6"),
        Err(Refusal::ConflictingContentLength)
    );
    assert_eq!(
        with_header("Content-Length: 5\r\nContent-Length: 6"),
        Err(Refusal::ConflictingContentLength)
    );
    assert_eq!(
        with_header("Content-Length: 9223372036854775807"),
        Ok(Admission::default())
    );
}

#[test]
fn content_length_is_digits_only_and_below_2_pow_63() {
    for invalid in [
        "+5",
        "-5",
        "0x5",
        "5 5",
        "5,",
        "5.0",
        "",
        "9223372036854775808",
        "99999999999999999999999",
    ] {
        assert_eq!(
            with_header(&format!("Content-Length: {invalid}")),
            Err(Refusal::InvalidContentLength),
            "{invalid:?}"
        );
    }
}

#[test]
fn content_length_with_transfer_encoding_is_refused_even_once_dropped() {
    let raw =
        "POST /p HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(check(raw), Err(Refusal::ContentLengthWithTransferEncoding));
    // Pingora removes the Content-Length from the parsed head; the bytes keep it.
    let dropped = parts("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let received = Received {
        head: &dropped,
        target: b"/p",
        raw_head: raw.as_bytes(),
        local: None,
    };
    assert_eq!(
        admit(received),
        Err(Refusal::ContentLengthWithTransferEncoding)
    );
    // A header whose value mentions it is not one.
    let mention = "POST /p HTTP/1.1\r\nHost: a\r\nX-Note: content-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(check(mention), Ok(Admission::default()));
}

#[test]
fn only_chunked_once_and_last_is_decoded() {
    let coding = |value: &str| with_header(&format!("Transfer-Encoding: {value}"));
    for accepted in ["chunked", "CHUNKED", ", chunked", "chunked ,"] {
        assert_eq!(coding(accepted), Ok(Admission::default()), "{accepted:?}");
    }
    for malformed in [
        "chunked, gzip",
        "identity",
        "gzip",
        "chunked, chunked",
        "chunked;x=1",
        "",
    ] {
        assert_eq!(
            coding(malformed),
            Err(Refusal::MalformedTransferEncoding),
            "{malformed:?}"
        );
    }
    assert_eq!(
        coding("gzip, chunked"),
        Err(Refusal::UnsupportedTransferCoding("gzip".into()))
    );
    assert_eq!(
        coding("x-custom, chunked"),
        Err(Refusal::UnsupportedTransferCoding("x-custom".into()))
    );
    assert_eq!(
        with_header("Transfer-Encoding: identity\r\nTransfer-Encoding: chunked"),
        Err(Refusal::UnsupportedTransferCoding("identity".into()))
    );
    assert_eq!(
        check("POST /p HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Err(Refusal::TransferEncodingInHttp10)
    );
}

#[test]
fn only_100_continue_is_expected_and_ignored_in_http_1_0() {
    for met in ["100-continue", "100-Continue"] {
        assert_eq!(
            with_header(&format!("Expect: {met}")),
            Ok(Admission::default())
        );
    }
    for unmet in ["foo", "100-continue, foo", "100-continue=1", "200-ok"] {
        assert_eq!(
            with_header(&format!("Expect: {unmet}")),
            Err(Refusal::UnsupportedExpectation),
            "{unmet}"
        );
    }
    let old = check("POST /p HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
    assert!(old.unwrap().drop_expect);
}

#[test]
fn refusals_carry_their_status_and_close_unless_well_formed() {
    assert_eq!(Refusal::MissingHost.status(), 400);
    assert_eq!(
        Refusal::UnsupportedTransferCoding("gzip".into()).status(),
        501
    );
    assert_eq!(Refusal::UnsupportedExpectation.status(), 417);
    assert!(Refusal::MalformedTransferEncoding.closes_connection());
    assert!(Refusal::UnsupportedTransferCoding("gzip".into()).closes_connection());
    assert!(!Refusal::UnsupportedExpectation.closes_connection());
}

#[test]
fn other_versions_frame_themselves() {
    assert_eq!(check("GET / HTTP/2.0\r\n\r\n"), Ok(Admission::default()));
}
