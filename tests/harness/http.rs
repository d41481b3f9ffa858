//! A minimal HTTP/1.1 GET over a real TCP connection, for the tests of the nodes' HTTP
//! listener (no client library: the tests see exactly what goes over the wire).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: its status code, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// `GET path` from `address` (`host:port`); an error when the connection or the response fails.
pub fn get(address: &str, path: &str) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(address).map_err(|err| format!("connect {address}: {err}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|err| err.to_string())?;
    stream.set_write_timeout(Some(Duration::from_secs(30))).map_err(|err| err.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
        .map_err(|err| format!("send: {err}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|err| format!("read: {err}"))?;
    let raw = String::from_utf8(raw).map_err(|err| format!("not UTF-8: {err}"))?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(key, value)| key == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked { dechunk(body)? } else { body.to_owned() };
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("truncated chunk size")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|err| format!("bad chunk size {size:?}: {err}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after.get(..size).ok_or("truncated chunk")?;
        body.push_str(chunk);
        rest = after.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// The samples of a Prometheus text exposition: `(name, labels as written, value)`. Panics
/// on a line that is not a comment, a blank or a sample.
pub fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                value => value.parse().unwrap_or_else(|err| panic!("bad value in {line:?}: {err}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            (name.to_owned(), labels.to_owned(), value)
        })
        .collect()
}
