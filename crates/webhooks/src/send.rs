//! One attempt at delivering an event: resolve the endpoint's host and check every address
//! ([`policy::resolve`]), then connect to those addresses only (the client's resolver is
//! overridden, and no proxy is used, since a proxy would pick the address itself), sign the
//! exact body with this attempt's timestamp, send, and read the status. Redirects are not
//! followed (a 3xx is a failure); connecting and answering each have the caller's timeout
//! ([`policy::SEND_TIMEOUT`] unless configured).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use url::Url;

use crate::policy::{self, Policy, Refusal};
use crate::schedule;
use crate::secret::Secret;
use crate::sign::{self, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// What a delivery sends: the same id and body on every attempt.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub url: &'a Url,
    /// The event id, sent as `webhook-id`.
    pub id: &'a str,
    pub body: &'a [u8],
    /// The endpoint's secrets, current first (two during a rotation's overlap).
    pub secrets: &'a [&'a Secret],
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx.
    Delivered { status: u16 },
    /// Any other status, including a redirect.
    Rejected { status: u16 },
    /// No answer: connection refused or reset, timeout, TLS failure.
    Failed { error: String },
    /// The destination is not allowed (now, after resolution); nothing was sent.
    Refused(Refusal),
}

/// Sends one attempt, signed with `timestamp` (seconds since the epoch), giving up on a
/// connection or an answer after `timeout`.
pub async fn send(
    delivery: Delivery<'_>,
    policy: Policy,
    timeout: Duration,
    timestamp: i64,
) -> Attempt {
    let addrs = match policy::resolve(delivery.url, policy).await {
        Ok(addrs) => addrs,
        Err(refusal) => return Attempt::Refused(refusal),
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(url::Host::Domain(name)) = delivery.url.host() {
        builder = builder.resolve_to_addrs(name, &addrs);
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(e) => {
            return Attempt::Failed {
                error: e.to_string(),
            };
        }
    };
    let signature = match sign::signature(delivery.secrets, delivery.id, timestamp, delivery.body) {
        Ok(signature) => signature,
        Err(e) => {
            return Attempt::Failed {
                error: e.to_string(),
            };
        }
    };
    let sent = client
        .post(delivery.url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static("batchd-webhooks/1"))
        .header(ID_HEADER, delivery.id)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(delivery.body.to_vec())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            if schedule::delivered(status) {
                Attempt::Delivered { status }
            } else {
                Attempt::Rejected { status }
            }
        }
        // Without the URL: an endpoint's URL may carry a token in its query.
        Err(e) => Attempt::Failed {
            error: e.without_url().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const OPEN: Policy = Policy {
        allow_http: true,
        allow_private: true,
    };

    /// What the receiver saw of one request.
    struct Received {
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    /// A receiver on a port of its own answering each request with the next of `answers` (a
    /// status line's code and extra header lines), reporting what it received.
    async fn receiver(
        answers: Vec<(u16, &'static str)>,
    ) -> (Url, tokio::sync::mpsc::UnboundedReceiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://localhost:{}/hook",
            listener.local_addr().unwrap().port()
        ))
        .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (status, extra) in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = socket.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers: HashMap<String, String> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                while buf.len() < head_end + len {
                    let n = socket.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_end..head_end + len].to_vec();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                let _ = tx.send(Received { headers, body });
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn a_receiver_verifies_the_signature_of_what_it_got() {
        let (url, mut rx) = receiver(vec![(204, "")]).await;
        let secret = Secret::generate();
        let body = br#"{"id":"evt_1","type":"message_batch.ended"}"#;
        let started = Instant::now();
        let attempt = send(
            Delivery {
                url: &url,
                id: "evt_1",
                body,
                secrets: &[&secret],
            },
            OPEN,
            policy::SEND_TIMEOUT,
            1_700_000_000,
        )
        .await;
        assert_eq!(attempt, Attempt::Delivered { status: 204 });
        println!(
            "one delivery to a loopback receiver: {:?}",
            started.elapsed()
        );
        let got = rx.recv().await.unwrap();
        assert_eq!(got.body, body);
        assert_eq!(got.headers["webhook-id"], "evt_1");
        assert_eq!(got.headers["webhook-timestamp"], "1700000000");
        assert_eq!(got.headers["content-type"], "application/json");
        assert!(sign::verify(
            &secret,
            "evt_1",
            1_700_000_000,
            &got.body,
            &got.headers["webhook-signature"]
        ));
    }

    #[tokio::test]
    async fn redirects_and_errors_are_failures_and_private_addresses_are_refused_at_send_time() {
        let (url, _rx) =
            receiver(vec![(307, "location: http://example.com/\r\n"), (500, "")]).await;
        let secret = Secret::generate();
        let delivery = Delivery {
            url: &url,
            id: "evt_2",
            body: b"{}",
            secrets: &[&secret],
        };
        assert_eq!(
            send(delivery, OPEN, policy::SEND_TIMEOUT, 1).await,
            Attempt::Rejected { status: 307 }
        );
        assert_eq!(
            send(delivery, OPEN, policy::SEND_TIMEOUT, 2).await,
            Attempt::Rejected { status: 500 }
        );
        // `localhost` resolves to loopback: refused unless private destinations are allowed,
        // and nothing is sent.
        let strict = Policy {
            allow_http: true,
            allow_private: false,
        };
        assert_eq!(
            send(delivery, strict, policy::SEND_TIMEOUT, 3).await,
            Attempt::Refused(Refusal::Private)
        );
    }

    #[tokio::test]
    async fn no_listener_is_a_failure_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let secret = Secret::generate();
        let started = Instant::now();
        let attempt = send(
            Delivery {
                url: &url,
                id: "evt_3",
                body: b"{}",
                secrets: &[&secret],
            },
            OPEN,
            policy::SEND_TIMEOUT,
            1,
        )
        .await;
        assert!(matches!(attempt, Attempt::Failed { .. }), "{attempt:?}");
        assert!(started.elapsed() < policy::SEND_TIMEOUT + Duration::from_secs(5));
    }
}
