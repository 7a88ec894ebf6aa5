use super::*;

/// A self-signed certificate for `name` and its key, in PEM.
fn pair(name: &str) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

#[test]
fn a_pair_loads_with_what_identifies_its_certificate() {
    let (cert, key) = pair("app.example");
    let loaded = ServerCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(loaded.subject, "CN=rcgen self signed cert");
    assert!(!loaded.serial.is_empty());
    // rcgen's default validity ends in 4096.
    assert!(loaded.not_after > 4_000_000_000, "{}", loaded.not_after);
    let debug = format!("{loaded:?}");
    assert!(
        debug.contains("subject") && !debug.contains("PRIVATE"),
        "{debug}"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_the_key_file() {
    let (cert, _) = pair("new.example");
    let (_, old_key) = pair("old.example");
    let error = ServerCertificate::from_pem(cert.as_bytes(), old_key.as_bytes()).unwrap_err();
    assert_eq!(error.file, PairFile::Key);
    assert_eq!(
        error.reason,
        "is not the private key of the certificate in cert_file"
    );
}

#[test]
fn what_is_not_a_certificate_is_refused_naming_the_certificate_file() {
    let (_, key) = pair("app.example");
    for (chain, expected) in [
        ("", "holds no PEM certificate"),
        ("just text\n", "holds no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "is not a valid X.509 certificate",
        ),
        (
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "is not a valid PEM file",
        ),
    ] {
        let error = ServerCertificate::from_pem(chain.as_bytes(), key.as_bytes()).unwrap_err();
        assert_eq!(error.file, PairFile::Certificate, "{chain:?}");
        assert!(error.reason.starts_with(expected), "{chain:?}: {error}");
    }
}

#[test]
fn a_broken_key_is_refused_without_quoting_it() {
    let (cert, _) = pair("app.example");
    for key in [
        "",
        "-----BEGIN PRIVATE KEY-----\nSECRETSECRET!\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n",
    ] {
        let error = ServerCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap_err();
        assert_eq!(error.file, PairFile::Key, "{key:?}");
        assert!(!error.reason.contains("SECRET"), "{error}");
    }
}

#[test]
fn the_resolver_swaps_only_for_another_pair() {
    let (cert, key) = pair("one.example");
    let first = ServerCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let serial = first.serial.clone();
    let resolver = CertificateResolver::new(Arc::new(first));
    let again = ServerCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    assert!(!resolver.replace(again), "the same bytes are no rotation");
    assert_eq!(resolver.current().serial, serial);

    let (cert, key) = pair("two.example");
    let second = ServerCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let next_serial = second.serial.clone();
    assert!(resolver.replace(second));
    assert_eq!(resolver.current().serial, next_serial);
}

#[test]
fn a_client_ca_bundle_must_hold_usable_certificates() {
    let (ca, _) = pair("ca.example");
    assert!(client_verifier(ca.as_bytes()).is_ok());
    let two = format!("{ca}{}", pair("other-ca.example").0);
    assert!(client_verifier(two.as_bytes()).is_ok());
    assert_eq!(
        client_verifier(b"").unwrap_err(),
        "holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"
    );
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(client_verifier(garbage.as_bytes())
        .unwrap_err()
        .starts_with("holds a CA certificate that cannot be used"));
}
