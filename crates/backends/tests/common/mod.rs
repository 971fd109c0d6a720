//! The fake upstream the backends' HTTP tests share: a few lines of HTTP/1.1 on a raw socket, so
//! a test sees exactly what went over the wire. It records every request as it read it and
//! answers each as the test says.

// Each test crate uses what it needs of this module.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the upstream read it: request line, headers in order (lowercased names), body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of the header `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the header `name`; panics when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.all(name)
            .first()
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    /// The request line's path.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
}

/// Reads one request off `socket`; `None` when the peer closed first.
pub async fn read_request(socket: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while buf.len() < end + 4 + len {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        line,
        headers,
        body: buf[end + 4..end + 4 + len].to_vec(),
    })
}

/// An upstream on a free port that answers every request with `respond(request)`, each
/// connection kept alive; its base URL and the requests it read.
pub async fn serve(
    respond: impl Fn(&Seen) -> String + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, respond) = (seen.clone(), Arc::new(respond));
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (log, respond) = (log.clone(), respond.clone());
            tokio::spawn(async move {
                while let Some(request) = read_request(&mut socket).await {
                    let response = respond(&request);
                    log.lock().unwrap().push(request);
                    socket.write_all(response.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (url, seen)
}

/// A raw HTTP/1.1 response with `headers` and `body` (its `content-length` added).
pub fn raw(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}
