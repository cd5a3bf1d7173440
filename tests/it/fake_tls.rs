//! What the fake platforms (`fake_shopify.rs`, `fake_salla.rs`, `fake_zid.rs`) share: an HTTPS
//! server on loopback whose certificate, for `localhost` and `127.0.0.1`, is signed by a CA made
//! at start, which a client must trust explicitly; the answers the fakes give; and the helpers
//! their self-tests read those answers with.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer};
use rcgen::{KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use url::Url;

pub(crate) type Answer = Response<Full<Bytes>>;

/// What a fake answers a request with: its head and its whole body.
type Handler = Arc<dyn Fn(&Parts, &[u8]) -> Answer + Send + Sync>;

/// An HTTPS server on loopback; dropping it stops the server.
pub(crate) struct TlsServer {
    /// `https://localhost:{port}`.
    pub base: String,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    ca_file: tempfile::NamedTempFile,
    server: JoinHandle<()>,
}

impl TlsServer {
    /// Serves `handler` under a certificate signed by a new CA named after `platform`.
    pub async fn start<F>(platform: &str, handler: F) -> TlsServer
    where
        F: Fn(&Parts, &[u8]) -> Answer + Send + Sync + 'static,
    {
        let (ca_pem, tls) = certificates(platform);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let server = tokio::spawn(serve(listener, acceptor, Arc::new(handler)));
        let mut ca_file = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
        ca_file.write_all(ca_pem.as_bytes()).unwrap();
        TlsServer {
            base: format!("https://localhost:{port}"),
            ca_pem,
            ca_file,
            server,
        }
    }

    /// A file holding `ca_pem`, for a daemon configured with a path; it lives as long as `self`.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.path().to_path_buf()
    }

    /// An HTTPS client that trusts this server's CA only and follows no redirect.
    pub fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Opens an authorize URL as the merchant's browser would, and returns where the consent
    /// screen sends the browser next: the app's callback URL.
    pub async fn follow_authorize(&self, authorize_url: &str) -> String {
        let answer = self.client().get(authorize_url).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::FOUND, "GET {authorize_url}");
        answer.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A CA made for one fake alone, and a server configuration whose certificate it signed for
/// `localhost` and `127.0.0.1`. Returns the CA's PEM with it.
fn certificates(platform: &str) -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let name = format!("cartstream fake {platform} CA");
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut leaf = CertificateParams::new(names).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = leaf.signed_by(&key, &issuer).unwrap().der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_pem, config)
}

/// Accepts connections until aborted; the connections end with it, as the set owns them.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, handler: Handler) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, handler) = (acceptor.clone(), handler.clone());
        connections.spawn(async move {
            // A client that does not trust the CA ends the handshake: nothing to serve.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request| handle(handler.clone(), request));
            let http = hyper::server::conn::http1::Builder::new();
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(handler: Handler, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(handler(&parts, &body))
}

pub(crate) fn answer(status: StatusCode, body: Value) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

pub(crate) fn redirect(location: &Url) -> Answer {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location.as_str())
        .body(Full::default())
        .unwrap()
}

pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

/// The parameters of the request's query string; of a repeated one, the last.
pub(crate) fn query(parts: &Parts) -> HashMap<String, String> {
    let query = parts.uri.query().unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The fields of a form-encoded body; `None` when the body is declared as something else.
pub(crate) fn form(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    content_type_is(headers, "application/x-www-form-urlencoded")
        .then(|| url::form_urlencoded::parse(body).into_owned().collect())
}

/// The object of a JSON body; `None` when the body is not declared JSON or is no object.
pub(crate) fn json_object(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    if !content_type_is(headers, "application/json") {
        return None;
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

fn content_type_is(headers: &HeaderMap, media_type: &str) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(media_type))
}

/// The token of an `Authorization: Bearer …` header, the scheme's case ignored.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The query parameters of a URL, for the self-tests to read a callback with.
pub(crate) fn query_of(url: &str) -> BTreeMap<String, String> {
    let url = Url::parse(url).unwrap();
    url.query_pairs().into_owned().collect()
}

/// Sends the request and reads its JSON answer.
pub(crate) async fn read(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let body = answer.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}
