//! TLS on the client side of streamgate's TLS listeners: a test CA that
//! issues server and client certificates (rcgen), and a blocking rustls
//! client that says what was negotiated (ALPN, version, the certificate the
//! server presented) and speaks HTTP/1.1 as bytes over it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::raw::{parse_response, RawResponse};

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl Pair {
    /// The certificate's serial number as the server presents it.
    pub fn serial(&self) -> String {
        let der = CertificateDer::from_pem_slice(self.cert.as_bytes()).expect("a PEM certificate");
        serial_of(&der)
    }

    /// When the certificate expires, in Unix seconds.
    pub fn not_after(&self) -> i64 {
        let der = CertificateDer::from_pem_slice(self.cert.as_bytes()).expect("a PEM certificate");
        let (_, certificate) =
            x509_parser::parse_x509_certificate(&der).expect("an X.509 certificate");
        certificate.validity().not_after.timestamp()
    }
}

fn serial_of(der: &CertificateDer<'_>) -> String {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).expect("an X.509 certificate");
    certificate.raw_serial_as_string()
}

impl Pair {
    /// A TLS server's acceptor presenting this pair: how the tests' own TLS
    /// servers (an upstream app, an identity provider) answer.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cert = CertificateDer::from_pem_slice(self.cert.as_bytes()).expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).expect("a PEM key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, to trust it.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1` with serial `serial`.
    pub fn server(&self, serial: u64) -> Pair {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).expect("server params");
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("streamgate test {serial}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&params)
    }

    /// A client certificate for `name`, as mutual TLS asks for.
    pub fn client(&self, name: &str) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params)
    }

    fn issue(&self, params: &CertificateParams) -> Pair {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// What a client offers: the CA it trusts, ALPN protocols, a certificate of
/// its own, and the highest TLS version.
pub struct ClientOptions<'a> {
    pub trust: &'a str,
    pub alpn: &'a [&'a str],
    pub identity: Option<&'a Pair>,
    pub tls12_only: bool,
}

impl<'a> ClientOptions<'a> {
    /// Trusts `ca`, offers no ALPN, no client certificate, TLS 1.2 and 1.3.
    pub fn trusting(ca: &'a str) -> Self {
        ClientOptions {
            trust: ca,
            alpn: &[],
            identity: None,
            tls12_only: false,
        }
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(self.trust.as_bytes()) {
            roots
                .add(certificate.expect("CA PEM"))
                .expect("usable CA certificate");
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::ALL_VERSIONS
        };
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .expect("protocol versions")
                .with_root_certificates(roots);
        let mut config = match self.identity {
            None => builder.with_no_client_auth(),
            Some(pair) => {
                let chain = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client chain");
                let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).expect("client key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client certificate")
            }
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}

/// A TLS connection to streamgate on `localhost:port`, its handshake done.
pub struct TlsClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
    /// Bytes read but not yet returned as a response.
    pending: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake; the error says why it failed.
    /// With TLS 1.3 a server refuses a client certificate only after the
    /// client finished: that refusal comes with the first response instead.
    pub fn connect(port: u16, options: &ClientOptions<'_>) -> Result<TlsClient, String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").expect("server name");
        let mut connection =
            ClientConnection::new(options.config(), name).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while connection.is_handshaking() {
            match connection.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(TlsClient {
            stream: StreamOwned::new(connection, tcp),
            pending: Vec::new(),
        })
    }

    /// The protocol the server picked by ALPN, if any.
    pub fn alpn(&self) -> Option<String> {
        self.stream
            .conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.conn.protocol_version()
    }

    /// The serial number of the certificate the server presented.
    pub fn served_serial(&self) -> String {
        let chain = self
            .stream
            .conn
            .peer_certificates()
            .expect("a server certificate");
        serial_of(&chain[0])
    }

    /// `GET path` over HTTP/1.1, keeping the connection open.
    pub fn get(&mut self, path: &str) -> Result<RawResponse, String> {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    }

    /// Writes `request` and reads the next response within 5 s; the error is
    /// the TLS or socket error that ended the connection instead.
    pub fn request(&mut self, request: &str) -> Result<RawResponse, String> {
        self.stream
            .write_all(request.as_bytes())
            .and_then(|()| self.stream.flush())
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some((response, used)) = parse_response(&self.pending) {
                self.pending.drain(..used);
                return Ok(response);
            }
            match self.stream.read(&mut buffer) {
                Ok(0) => return Err("the connection closed before a response".into()),
                Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A TLS 1.1 ClientHello, as an old client sends it (no `supported_versions`
/// extension, so no later version is on offer), otherwise acceptable to a
/// TLS 1.2 server (a suite, a group and a signature scheme it knows): what a
/// server that speaks only TLS 1.2 and 1.3 must refuse for its version alone.
pub fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version: TLS 1.1
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]); // ECDHE-ECDSA-AES128-GCM-SHA256
    hello.extend_from_slice(&[0x01, 0x00]); // null compression only
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04,
        0x03, // signature_algorithms: ecdsa_secp256r1_sha256
    ];
    hello.extend_from_slice(
        &u16::try_from(extensions.len())
            .expect("short")
            .to_be_bytes(),
    );
    hello.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(hello.len()).expect("short").to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).expect("short").to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}
