//! HTTPS in the default build, against real servers whose certificates a CA made here
//! signed (`rcgen`): a real Prometheus serving only HTTPS (`tls_server_config`) read by
//! the Prometheus source, trusted through its `ca_file`; and an HTTPS webhook receiver
//! (axum over rustls) moved by `canary run --actuator webhook=https://…`, trusted through
//! `SSL_CERT_FILE`, which the platform roots honour. Without the CA the same
//! connections are refused: certificates are checked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

use canary::actuators::webhook::ActuationRequest;
use canary::sources::MetricSource;
use canary::sources::prometheus::PrometheusConfig;

use crate::helpers::{Run, root};
use crate::prometheus_harness::{ServerTls, start_prometheus_with_tls};

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`, as
/// PEM files and as rustls configurations.
struct TestPki {
    _directory: tempfile::TempDir,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn test_pki() -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "canary test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let certificate = params.signed_by(&server_key, &ca).unwrap();

    let directory = tempfile::tempdir().unwrap();
    let ca_file = directory.path().join("ca.pem");
    let cert_file = directory.path().join("server.pem");
    let key_file = directory.path().join("server-key.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, certificate.pem()).unwrap();
    std::fs::write(&key_file, server_key.serialize_pem()).unwrap();

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.der().clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestPki {
        _directory: directory,
        ca_file,
        cert_file,
        key_file,
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// Serves HTTPS with the test certificate: axum over a listener that completes each
/// TLS handshake before handing the connection on (failed handshakes are dropped).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn serve_https(router: Router, pki: &TestPki) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(pki.server.clone()),
    };
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

fn recording() -> String {
    let mut text = String::from("# TYPE demo_requests counter\n");
    for minute in 0..10 {
        text.push_str(&format!(
            "demo_requests_total{{track=\"canary\"}} {} {}\n",
            minute * 60,
            1_700_000_000 + minute * 60
        ));
    }
    text.push_str("# EOF\n");
    text
}

#[tokio::test]
async fn the_prometheus_source_reads_an_https_prometheus_that_its_ca_file_trusts() {
    let pki = test_pki();
    let prometheus = start_prometheus_with_tls(
        &recording(),
        &ServerTls {
            cert_file: pki.cert_file.clone(),
            key_file: pki.key_file.clone(),
            client: pki.client.clone(),
        },
    );
    assert!(prometheus.url.starts_with("https://localhost:"));

    let mut trusted = PrometheusConfig::new(&prometheus.url);
    trusted.ca_file = Some(pki.ca_file.clone());
    let source = trusted.build().expect("https is built in");
    source
        .healthcheck()
        .await
        .expect("Prometheus answers over HTTPS");

    // The platform roots alone do not know the test CA: the certificate is checked.
    let mut untrusted = PrometheusConfig::new(&prometheus.url);
    untrusted.retries = 0;
    let error = untrusted.build().unwrap().healthcheck().await.unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
}

/// What the HTTPS webhook receiver got: the requests, in order.
type Received = Arc<Mutex<Vec<ActuationRequest>>>;

/// Applies every change and answers the flag's new state, as `docs/webhook-actuator.md`
/// asks (signatures are checked by `tests/it/webhook.rs`; here only the transport).
async fn receive(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    assert!(headers.contains_key(canary::signing::SIGNATURE_HEADER));
    let request: ActuationRequest = serde_json::from_slice(&body).unwrap();
    let state = json!({
        "enabled": request.action == "set_rollout",
        "rollout": request.target_percentage,
    });
    received.lock().unwrap().push(request);
    (StatusCode::OK, Json(state))
}

async fn canary_run_with_webhook(url: &str, ca_file: Option<&PathBuf>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_canary"));
    command
        .args([
            "run",
            "--profile",
            "analysis-profiles/web-service.toml",
            "--source",
            "replay=fixtures/replay/healthy",
            "--flag",
            "checkout-v2",
            "--actuator",
            &format!("webhook={url}"),
            "--speed",
            "100000",
        ])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env("CANARY_WEBHOOK_SECRET", "whsec_tls_test");
    match ca_file {
        Some(ca_file) => command.env("SSL_CERT_FILE", ca_file),
        None => command.env_remove("SSL_CERT_FILE"),
    };
    command
        .output()
        .await
        .expect("the canary binary runs")
        .into()
}

#[tokio::test]
async fn canary_run_moves_a_flag_through_an_https_webhook_trusted_through_ssl_cert_file() {
    let pki = test_pki();
    let received = Received::default();
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(received.clone());
    let address = serve_https(router, &pki).await;
    let url = format!("https://localhost:{}/hook", address.port());

    let result = canary_run_with_webhook(&url, Some(&pki.ca_file)).await;
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    assert!(
        result.stdout.starts_with("rollout: PROMOTE"),
        "{}",
        result.stdout
    );
    let targets: Vec<f64> = received
        .lock()
        .unwrap()
        .iter()
        .map(|request| request.target_percentage)
        .collect();
    assert_eq!(targets, [1.0, 5.0, 25.0, 50.0, 100.0]);

    // Without the CA the receiver's certificate is refused and nothing is moved.
    received.lock().unwrap().clear();
    let refused = canary_run_with_webhook(&url, None).await;
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("certificate") || refused.stdout.contains("certificate"),
        "the refusal names the certificate:\n{}\n{}",
        refused.stdout,
        refused.stderr
    );
    assert!(received.lock().unwrap().is_empty());
}

/// Terminates TLS with the test certificate and passes the bytes on to `target`: an
/// HTTPS front for the in-process API (`canary serve` itself serves plain HTTP).
async fn https_front(target: SocketAddr, pki: &TestPki) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                }
            });
        }
    });
    address
}

async fn canary_wait(id: &str, server: &str, ca_file: Option<&PathBuf>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_canary"));
    command
        .args(["wait", id, "--server", server, "--timeout", "10s"])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env_remove("CANARY_TOKEN");
    match ca_file {
        Some(ca_file) => command.env("SSL_CERT_FILE", ca_file),
        None => command.env_remove("SSL_CERT_FILE"),
    };
    command
        .output()
        .await
        .expect("the canary binary runs")
        .into()
}

#[tokio::test]
async fn canary_wait_reads_a_verdict_from_an_https_server() {
    let pki = test_pki();
    let app = crate::api::spawn_app().await;
    let id = app.submit().await;
    app.finish(id, canary::store::AnalysisState::Promoted, "promote")
        .await;
    let plain: SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let front = https_front(plain, &pki).await;
    let server = format!("https://localhost:{}", front.port());

    let result = canary_wait(&id.to_string(), &server, Some(&pki.ca_file)).await;
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    assert!(result.stdout.contains("promote"), "{}", result.stdout);

    let refused = canary_wait(&id.to_string(), &server, None).await;
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("certificate"), "{}", refused.stderr);
}
