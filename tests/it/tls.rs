//! Native HTTPS with rustls.

use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::support::binary::{Server, free_port, read_response};
use crate::support::{Backend, test_env};

async fn https_get(
    addr: std::net::SocketAddr,
    roots: &RootCertStore,
    versions: &[&'static rustls::SupportedProtocolVersion],
    path: &str,
) -> crate::support::binary::HttpResponse {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut tls).await
}

#[tokio::test]
async fn native_https_serves_tls_1_2_and_1_3_with_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let mut env = test_env(dir.path(), Backend::Sqlite);
    env.insert("SESAME_SERVER__TLS_CERT".into(), cert.display().to_string());
    env.insert("SESAME_SERVER__TLS_KEY".into(), key.display().to_string());
    let port = free_port();
    let public_url = format!("https://127.0.0.1:{port}");
    let server = Server::start_on(
        port,
        dir.path(),
        &env,
        "serve",
        &["--public-url", &public_url],
    )
    .unwrap();
    assert!(server.banner.contains(&public_url), "{}", server.banner);

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(certified.cert.der().to_vec()))
        .unwrap();
    let tls13 = https_get(server.addr, &roots, &[&rustls::version::TLS13], "/").await;
    assert_eq!(tls13.status, 200);
    assert_eq!(
        tls13.header("strict-transport-security").as_deref(),
        Some("max-age=63072000")
    );
    let tls12 = https_get(server.addr, &roots, &[&rustls::version::TLS12], "/healthz").await;
    assert_eq!(tls12.status, 200);

    // Plain HTTP on the TLS port gets no page.
    let plain = crate::support::binary::http_get(server.addr, "/", &server.addr.to_string()).await;
    assert_ne!(plain.status, 200);
    server.terminate();
}

#[test]
fn a_certificate_without_its_key_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path(), Backend::Sqlite);
    env.insert(
        "SESAME_SERVER__TLS_CERT".into(),
        "/etc/sesame/cert.pem".into(),
    );
    let output = crate::support::binary::run(dir.path(), &env, &["serve"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(crate::support::binary::stderr(&output).contains("server.tls_key"));
}
