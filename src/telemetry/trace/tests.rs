use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn sent(trace: &mut RequestTrace, tracing: &Tracing) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in trace.start_upstream(tracing, "GET", "app", &"127.0.0.1:8080") {
        map.append(name, value);
    }
    map
}

fn parts(map: &HeaderMap) -> Vec<String> {
    map["traceparent"]
        .to_str()
        .unwrap()
        .split('-')
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_trusted_callers_trace_is_continued_with_its_state() {
    let tracing = Tracing::new(&TracingSettings::default(), &Metrics::new()).unwrap();
    let received = headers(&[("traceparent", PARENT), ("tracestate", "vendor=abc")]);
    let mut trace = tracing.start("GET", &received, true);
    assert_eq!(trace.trace_id(), "0af7651916cd43dd8448eb211c80319c");
    let sent = sent(&mut trace, &tracing);
    let parts = parts(&sent);
    assert_eq!(parts[1], "0af7651916cd43dd8448eb211c80319c");
    assert_ne!(parts[2], "b7ad6b7169203331", "streamgate's own span id");
    assert_eq!(parts[3], "01");
    assert_eq!(sent["tracestate"], "vendor=abc");
}

#[test]
fn an_untrusted_callers_trace_is_not_believed() {
    let tracing = Tracing::new(&TracingSettings::default(), &Metrics::new()).unwrap();
    let received = headers(&[("traceparent", PARENT), ("tracestate", "vendor=abc")]);
    let mut trace = tracing.start("GET", &received, false);
    assert_ne!(trace.trace_id(), "0af7651916cd43dd8448eb211c80319c");
    let sent = sent(&mut trace, &tracing);
    assert_eq!(parts(&sent)[1], trace.trace_id());
    assert!(sent.get("tracestate").is_none());
}

#[test]
fn malformed_or_repeated_contexts_start_a_new_trace() {
    let tracing = Tracing::new(&TracingSettings::default(), &Metrics::new()).unwrap();
    for received in [
        headers(&[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        )]),
        headers(&[(
            "traceparent",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        )]),
        headers(&[(
            "traceparent",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )]),
        headers(&[(
            "traceparent",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        )]),
        headers(&[("traceparent", PARENT), ("traceparent", PARENT)]),
    ] {
        let mut trace = tracing.start("GET", &received, true);
        assert_ne!(trace.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        let sent = sent(&mut trace, &tracing);
        let parts = parts(&sent);
        assert_eq!(parts.len(), 4, "{sent:?}");
        assert_eq!((parts[0].as_str(), parts[3].as_str()), ("00", "01"));
        assert_eq!(parts[1], trace.trace_id());
    }
}

#[test]
fn repeated_tracestate_headers_are_one_list() {
    let tracing = Tracing::new(&TracingSettings::default(), &Metrics::new()).unwrap();
    let received = headers(&[
        ("traceparent", PARENT),
        ("tracestate", "a=1"),
        ("tracestate", "b=2"),
    ]);
    let mut trace = tracing.start("GET", &received, true);
    assert_eq!(sent(&mut trace, &tracing)["tracestate"], "a=1,b=2");
}

#[test]
fn an_unsampled_trusted_trace_stays_unsampled() {
    let tracing = Tracing::new(&TracingSettings::default(), &Metrics::new()).unwrap();
    let unsampled = PARENT.replace("-01", "-00");
    let mut trace = tracing.start("GET", &headers(&[("traceparent", &unsampled)]), true);
    assert_eq!(parts(&sent(&mut trace, &tracing))[3], "00");
}

#[test]
fn endpoints_with_credentials_or_other_schemes_are_refused() {
    for (text, expected) in [
        ("http://user:pw@collector:4318/v1/traces", "credentials"),
        ("grpc://collector:4317", "http or https"),
        ("collector:4318", "scheme"),
        ("not a url", "not a URL"),
    ] {
        let error = OtlpEndpoint::try_from(text.to_owned()).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
        assert!(!error.contains("pw"), "{error}");
    }
    assert!(OtlpEndpoint::try_from("https://otel.example:4318/v1/traces".to_owned()).is_ok());
}
