//! A small HTTP/1.1 client for the HTTP side of a node: one request per
//! connection (hyper's client connection), JSON helpers and HTTP Basic.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Bound for one request, connection included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// An answer, read to the end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}), status {}: {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// `Authorization: Basic ...` for these credentials.
pub fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A request to build and send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    tls: bool,
    /// The local address to connect from (any 127.x.y.z works on Linux).
    source: Option<IpAddr>,
}

impl HttpRequest {
    pub fn new(addr: SocketAddr, method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            addr,
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            tls: false,
            source: None,
        }
    }

    /// Over TLS (`[http] tls = true`), accepting the node's self-signed
    /// certificate.
    pub fn tls(mut self) -> HttpRequest {
        self.tls = true;
        self
    }

    /// Connects from `ip` (for per-address limits: 127.0.0.2 is another
    /// client than 127.0.0.1).
    pub fn from_ip(mut self, ip: IpAddr) -> HttpRequest {
        self.source = Some(ip);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn basic(self, user: &str, password: &str) -> HttpRequest {
        self.header("authorization", &basic(user, password))
    }

    /// A raw body with its content type.
    pub fn body(mut self, body: impl Into<Bytes>, content_type: &str) -> HttpRequest {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    pub fn json(mut self, value: &serde_json::Value) -> HttpRequest {
        self.body = Bytes::from(value.to_string());
        self.header("content-type", "application/json")
    }

    /// Sends the request; an I/O or protocol failure is an error, any
    /// status is an answer.
    pub async fn send(self) -> anyhow::Result<Response> {
        tokio::time::timeout(HTTP_TIMEOUT, self.exchange())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {HTTP_TIMEOUT:?}"))?
    }

    async fn exchange(self) -> anyhow::Result<Response> {
        let stream = match self.source {
            None => TcpStream::connect(self.addr).await?,
            Some(ip) => {
                let socket = match ip {
                    IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(self.addr).await?
            }
        };
        if !self.tls {
            return self.exchange_over(stream).await;
        }
        let connector = crate::tls::insecure_connector()?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let stream = connector.connect(name, stream).await?;
        self.exchange_over(stream).await
    }

    async fn exchange_over<S>(self, stream: S) -> anyhow::Result<Response>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(self.method.as_str())
            .uri(self.path.as_str())
            .header(header::HOST, self.addr.to_string());
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), HeaderValue::from_str(value)?);
        }
        let request = request.body(Full::new(self.body))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        driver.abort();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// `GET path` with HTTP Basic, panicking on a transport failure.
pub async fn get(addr: SocketAddr, path: &str, user: &str, password: &str) -> Response {
    HttpRequest::new(addr, "GET", path)
        .basic(user, password)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET http://{addr}{path}: {error}"))
}

/// `METHOD path` with a JSON body and HTTP Basic, panicking on a transport failure.
pub async fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &serde_json::Value,
    user: &str,
    password: &str,
) -> Response {
    HttpRequest::new(addr, method, path)
        .basic(user, password)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{method} http://{addr}{path}: {error}"))
}
