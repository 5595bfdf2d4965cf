//! A tiny HTTP/1.1 client for the proxy's admin port (`POST /reload`,
//! `GET /status`): one request per connection, `Connection: close`, the body
//! read to EOF. std only; enough for the fixed routes the admin port serves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How long [`http_request`] waits to connect and for the whole answer.
pub const HTTP_BOUND: Duration = Duration::from_secs(10);

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// Sends `METHOD path` with an empty body to `addr` and reads the answer.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Result<HttpResponse> {
    http_request_with(addr, method, path, &[])
}

/// [`http_request`] with extra header lines (`Name: value`, no CRLF).
pub fn http_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
) -> Result<HttpResponse> {
    http_exchange(addr, method, path, headers, "")
}

/// `POST path` with a JSON body (`POST /targets/<addr>/state`).
pub fn http_post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Result<HttpResponse> {
    let mut with_type = headers.to_vec();
    with_type.push("Content-Type: application/json");
    http_exchange(addr, "POST", path, &with_type, body)
}

fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_BOUND)
        .with_context(|| format!("connecting to http://{addr}"))?;
    stream.set_read_timeout(Some(HTTP_BOUND))?;
    stream.set_write_timeout(Some(HTTP_BOUND))?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} http://{addr}{path}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{method} http://{addr}{path}: no complete HTTP header in {text:?}");
    };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{method} http://{addr}{path}: bad status line in {head:?}"))?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}
