//! [`Client`] and its [`ClientBuilder`]: the six Message Batches calls, auto-pagination, results
//! streaming and the SDK-compatible retry loop; beside them, the calls of batchd's test mode,
//! and of its webhook endpoints (`webhooks`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use batchd_wire::test_mode::{AdvanceClock, TestClock, TestFixtures, TestMockRules, TestReset};
use batchd_wire::{CreateBatch, DeletedMessageBatch, ListPage, MessageBatch, ResultLine};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, default_kind};
use crate::jsonl::{self, DEFAULT_MAX_LINE_BYTES, Line};
use crate::retry;

mod openai;
mod webhooks;

pub use openai::OpenAiListParams;

/// `anthropic-version` sent on every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The `anthropic-beta` value the SDKs' beta namespace adds for batches.
pub const BATCHES_BETA: &str = "message-batches-2024-09-24";
/// The real API, for [`Client::from_env`].
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Default total time for one attempt of a JSON call, and the idle read limit of downloads.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default time to establish a connection (the Python SDK's `connect=5`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const JSON: &str = "application/json";
const JSONL: &str = "application/x-jsonl";

/// Query parameters of `GET /v1/messages/batches`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Page size, 1–1000 (server default 20).
    pub limit: Option<u32>,
    /// Return the page just newer than this batch.
    pub before_id: Option<String>,
    /// Return the page just older than this batch.
    pub after_id: Option<String>,
}

/// Configures a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: String,
    max_retries: u32,
    timeout: Duration,
    connect_timeout: Duration,
    betas: Vec<String>,
    beta_namespace: bool,
    proxy_from_env: bool,
    max_line_bytes: usize,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("max_retries", &self.max_retries)
            .field("timeout", &self.timeout)
            .field("betas", &self.betas)
            .field("beta_namespace", &self.beta_namespace)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder with the SDK defaults: 2 retries, 600 s timeout, no betas.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: api_key.into(),
            max_retries: retry::DEFAULT_MAX_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            betas: Vec::new(),
            beta_namespace: false,
            proxy_from_env: true,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Retries after the first attempt (0 disables retrying).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Total time for one attempt of a JSON call; for results downloads, the longest wait for
    /// the response or for the next chunk of its body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed to establish a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Adds a value to the `anthropic-beta` header of every request.
    pub fn beta(mut self, beta: impl Into<String>) -> Self {
        self.betas.push(beta.into());
        self
    }

    /// Uses the SDKs' beta namespace (`client.beta.messages.batches`): every call adds
    /// `?beta=true` and `anthropic-beta: message-batches-2024-09-24` (after any other betas).
    pub fn beta_namespace(mut self, on: bool) -> Self {
        self.beta_namespace = on;
        self
    }

    /// Ignores `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` from the environment.
    pub fn no_proxy(mut self) -> Self {
        self.proxy_from_env = false;
        self
    }

    /// Longest accepted results line (default 64 MiB); longer lines fail the stream.
    pub fn max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    /// Builds the client. Fails on a base URL that is not absolute `http(s)`, or a key or beta
    /// that cannot be a header value.
    pub fn build(self) -> Result<Client> {
        let base_str = self.base_url.trim();
        let base = Url::parse(base_str)
            .map_err(|e| Error::Invalid(format!("invalid base URL {base_str:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Invalid(format!(
                "invalid base URL {base_str:?}: expected http:// or https://"
            )));
        }
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(&self.api_key)
            .map_err(|_| Error::Invalid("the API key is not a valid header value".into()))?;
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        // The OpenAI routes take the key the OpenAI way; it is sent only on their calls.
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", self.api_key))
            .map_err(|_| Error::Invalid("the API key is not a valid header value".into()))?;
        bearer.set_sensitive(true);
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("batchd-client/", env!("CARGO_PKG_VERSION"))),
        );
        let mut betas: Vec<&str> = self
            .betas
            .iter()
            .map(|b| b.trim())
            .filter(|b| !b.is_empty())
            .collect();
        if self.beta_namespace && !betas.contains(&BATCHES_BETA) {
            betas.push(BATCHES_BETA);
        }
        if !betas.is_empty() {
            let joined = betas.join(",");
            let value = HeaderValue::from_str(&joined).map_err(|_| {
                Error::Invalid(format!(
                    "anthropic-beta {joined:?} is not a valid header value"
                ))
            })?;
            headers.insert("anthropic-beta", value);
        }

        let origin = base.origin();
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.timeout)
            // Follow redirects only within the origin: reqwest strips `authorization` but not
            // `x-api-key` on cross-host redirects.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else if attempt.url().origin() == origin {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }));
        if !self.proxy_from_env {
            http = http.no_proxy();
        }
        let http = http.build().map_err(Error::Transport)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                max_retries: self.max_retries,
                timeout: self.timeout,
                beta_namespace: self.beta_namespace,
                max_line_bytes: self.max_line_bytes,
                bearer,
            }),
        })
    }
}

/// An async client for the Message Batches API. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    max_retries: u32,
    timeout: Duration,
    beta_namespace: bool,
    max_line_bytes: usize,
    /// `Authorization: Bearer <key>`, for the OpenAI calls.
    bearer: HeaderValue,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field("max_retries", &self.inner.max_retries)
            .field("timeout", &self.inner.timeout)
            .field("beta_namespace", &self.inner.beta_namespace)
            .finish_non_exhaustive()
    }
}

/// One HTTP call, replayable for retries.
struct Call {
    method: Method,
    url: Url,
    body: Option<Bytes>,
    accept: &'static str,
    /// The body's `Content-Type` (JSON unless set).
    content_type: Option<String>,
    /// An OpenAI route: the key also goes as `Authorization: Bearer`.
    openai: bool,
}

impl Client {
    /// A client with default settings; see [`ClientBuilder`].
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Result<Self> {
        ClientBuilder::new(base_url, api_key).build()
    }

    /// A builder, for retries, timeouts and betas.
    pub fn builder(base_url: impl Into<String>, api_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(base_url, api_key)
    }

    /// A client from `ANTHROPIC_BASE_URL` (default `https://api.anthropic.com`) and
    /// `ANTHROPIC_API_KEY`, like the SDKs.
    pub fn from_env() -> Result<Self> {
        let key = std::env::var("ANTHROPIC_API_KEY")
            .map_err(|_| Error::Invalid("ANTHROPIC_API_KEY is not set".into()))?;
        let base = std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        Self::new(base, key)
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// `POST /v1/messages/batches`.
    pub async fn create(&self, body: &CreateBatch) -> Result<MessageBatch> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Invalid(format!("cannot serialise the batch: {e}")))?;
        self.json(Method::POST, self.endpoint(&[])?, Some(body.into()))
            .await
    }

    /// `GET /v1/messages/batches/{id}`.
    pub async fn retrieve(&self, id: &str) -> Result<MessageBatch> {
        let url = self.endpoint(&[check_id(id)?])?;
        self.json(Method::GET, url, None).await
    }

    /// `GET /v1/messages/batches`: one page.
    pub async fn list(&self, params: &ListParams) -> Result<ListPage<MessageBatch>> {
        let mut url = self.endpoint(&[])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(limit) = params.limit {
                q.append_pair("limit", &limit.to_string());
            }
            if let Some(id) = &params.before_id {
                q.append_pair("before_id", id);
            }
            if let Some(id) = &params.after_id {
                q.append_pair("after_id", id);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.json(Method::GET, url, None).await
    }

    /// Every batch from `params` on, fetching pages lazily as the SDKs auto-paginate: while
    /// `has_more` and the cursor is non-null, the next page uses `before_id = first_id` if the
    /// original call had `before_id`, else `after_id = last_id`. Ends after the first error.
    pub fn list_all(&self, params: ListParams) -> BoxStream<'static, Result<MessageBatch>> {
        struct State {
            client: Client,
            next: Option<ListParams>,
            backward: bool,
            ready: VecDeque<MessageBatch>,
        }
        let state = State {
            client: self.clone(),
            backward: params.before_id.is_some(),
            next: Some(params),
            ready: VecDeque::new(),
        };
        stream::unfold(state, |mut st| async move {
            loop {
                if let Some(batch) = st.ready.pop_front() {
                    return Some((Ok(batch), st));
                }
                let params = st.next.take()?;
                match st.client.list(&params).await {
                    Err(e) => return Some((Err(e), st)),
                    Ok(page) => {
                        if page.has_more && !page.data.is_empty() {
                            let cursor = if st.backward {
                                page.first_id
                            } else {
                                page.last_id
                            };
                            if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
                                let mut next = params;
                                if st.backward {
                                    next.before_id = Some(cursor);
                                } else {
                                    next.after_id = Some(cursor);
                                }
                                st.next = Some(next);
                            }
                        }
                        st.ready.extend(page.data);
                    }
                }
            }
        })
        .boxed()
    }

    /// `POST /v1/messages/batches/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<MessageBatch> {
        let url = self.endpoint(&[check_id(id)?, "cancel"])?;
        self.json(Method::POST, url, None).await
    }

    /// `POST /v1/messages/batches/{id}/rerun`, batchd's extension: a new batch of the ended
    /// batch's requests whose result type is one of `only` (`errored`, `expired`, `canceled`;
    /// the server's default, all three, when empty). The answer's extra `rerun_of` is dropped.
    pub async fn rerun(&self, id: &str, only: &[&str]) -> Result<MessageBatch> {
        let url = self.endpoint(&[check_id(id)?, "rerun"])?;
        let body = if only.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ "only": only })
        };
        self.json(Method::POST, url, Some(body.to_string().into()))
            .await
    }

    /// `DELETE /v1/messages/batches/{id}`.
    pub async fn delete(&self, id: &str) -> Result<DeletedMessageBatch> {
        let url = self.endpoint(&[check_id(id)?])?;
        self.json(Method::DELETE, url, None).await
    }

    /// The results body as raw bytes, e.g. for writing to a file.
    ///
    /// Like the SDKs, this retrieves the batch first and downloads its `results_url` verbatim
    /// (an absolute URL as is; a relative one below the base URL); a batch without
    /// `results_url` is [`Error::NoResults`]. Errors before the body starts (including API
    /// errors) come from this call; errors while streaming come from the stream.
    pub async fn results_raw(&self, id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let batch = self.retrieve(id).await?;
        let url = match batch.results_url.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => self.resolve(u)?,
            _ => {
                return Err(Error::NoResults {
                    id: batch.id,
                    status: batch.processing_status,
                });
            }
        };
        let call = Call {
            method: Method::GET,
            url,
            body: None,
            accept: JSONL,
            content_type: None,
            openai: false,
        };
        let response = self.execute(&call).await?;
        Ok(response.bytes_stream().map_err(Error::Transport).boxed())
    }

    /// The results as validated, numbered lines (no blank lines, none over the line cap),
    /// exactly as received apart from the line terminator.
    pub async fn results_lines(&self, id: &str) -> Result<BoxStream<'static, Result<Line>>> {
        let bytes = self.results_raw(id).await?;
        Ok(jsonl::split_lines(bytes, self.inner.max_line_bytes))
    }

    /// The results, parsed line by line from the byte stream in bounded memory. A blank or
    /// malformed line is an error that ends the stream.
    pub async fn results(&self, id: &str) -> Result<BoxStream<'static, Result<ResultLine>>> {
        let lines = self.results_lines(id).await?;
        Ok(lines
            .map(|line| {
                let line = line?;
                serde_json::from_slice(&line.bytes)
                    .map_err(|e| Error::Decode(format!("results line {}: {e}", line.number)))
            })
            .boxed())
    }

    /// `GET /v1/batchd/test/clock`: the workspace's virtual clock (a batchd server in test mode
    /// only; other servers answer 404).
    pub async fn test_clock(&self) -> Result<TestClock> {
        self.json(Method::GET, self.test_endpoint(&["clock"])?, None)
            .await
    }

    /// `POST /v1/batchd/test/clock/advance`: moves the workspace's clock forward.
    pub async fn test_advance(&self, seconds: u64) -> Result<TestClock> {
        let body = serde_json::to_vec(&AdvanceClock { seconds })
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let url = self.test_endpoint(&["clock", "advance"])?;
        self.json(Method::POST, url, Some(body.into())).await
    }

    /// `PUT /v1/batchd/test/mock/rules` with `body` (`{"rules": [...], "chaos": ...}`) as is.
    pub async fn test_put_rules(&self, body: Vec<u8>) -> Result<TestMockRules> {
        let url = self.test_endpoint(&["mock", "rules"])?;
        self.json(Method::PUT, url, Some(body.into())).await
    }

    /// `POST /v1/batchd/test/mock/fixtures` with `jsonl` (lines of a results file) as is.
    pub async fn test_fixtures(&self, jsonl: Vec<u8>) -> Result<TestFixtures> {
        let url = self.test_endpoint(&["mock", "fixtures"])?;
        self.json(Method::POST, url, Some(jsonl.into())).await
    }

    /// `POST /v1/batchd/test/reset`: deletes everything the workspace owns but its keys.
    pub async fn test_reset(&self) -> Result<TestReset> {
        let url = self.test_endpoint(&["reset"])?;
        self.json(Method::POST, url, Some(Bytes::from_static(b"{}")))
            .await
    }

    /// `{base}/v1/batchd/test/{segments…}`: batchd's test-mode routes.
    fn test_endpoint(&self, segments: &[&str]) -> Result<Url> {
        self.batchd_endpoint(&["test"], segments)
    }

    /// `{base}/v1/batchd/{area…}/{segments…}`: batchd's own routes (never `?beta=true`).
    fn batchd_endpoint(&self, area: &[&str], segments: &[&str]) -> Result<Url> {
        let mut url = self.inner.base.clone();
        url.set_fragment(None);
        url.set_query(None);
        url.path_segments_mut()
            .map_err(|()| Error::Invalid("the base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["v1", "batchd"])
            .extend(area)
            .extend(segments);
        Ok(url)
    }

    /// `{base}/v1/messages/batches/{segments…}` (with `?beta=true` in the beta namespace).
    fn endpoint(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.inner.base.clone();
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| Error::Invalid("the base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["v1", "messages", "batches"])
            .extend(segments);
        if self.inner.beta_namespace {
            url.query_pairs_mut().append_pair("beta", "true");
        }
        Ok(url)
    }

    /// An absolute `results_url` as is; a relative one appended to the base URL's path.
    fn resolve(&self, results_url: &str) -> Result<Url> {
        if let Ok(url) = Url::parse(results_url) {
            return Ok(url);
        }
        let base = self.inner.base.as_str().trim_end_matches('/');
        let joined = format!("{base}/{}", results_url.trim_start_matches('/'));
        Url::parse(&joined)
            .map_err(|e| Error::Decode(format!("bad results_url {results_url:?}: {e}")))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
    ) -> Result<T> {
        let call = Call {
            method,
            url,
            body,
            accept: JSON,
            content_type: None,
            openai: false,
        };
        self.json_of(call).await
    }

    /// Sends `call` with retries and decodes its JSON answer.
    async fn json_of<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let (status, bytes) = self.execute_buffered(&call).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Decode(format!(
                "{} {} → {}: {e}: {}",
                call.method,
                call.url.path(),
                status.as_u16(),
                snippet(&bytes)
            ))
        })
    }

    /// Sends with retries and reads the whole body inside the retry loop (so a connection
    /// dropped mid-body is retried, as the SDKs do), under the per-attempt timeout.
    async fn execute_buffered(&self, call: &Call) -> Result<(StatusCode, Bytes)> {
        let mut retries_taken = 0;
        loop {
            let failure = match self.send_once(call, retries_taken, true).await {
                Ok(response) if response.status().is_success() => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) => return Ok((status, bytes)),
                        Err(e) => Failure::Transport(e),
                    }
                }
                Ok(response) => Failure::Status(response),
                Err(e) => Failure::Transport(e),
            };
            retries_taken = self.after_failure(failure, retries_taken).await?;
        }
    }

    /// Sends with retries and returns the first successful response, body unread.
    async fn execute(&self, call: &Call) -> Result<reqwest::Response> {
        let mut retries_taken = 0;
        loop {
            let failure = match self.send_once(call, retries_taken, false).await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => Failure::Status(response),
                Err(e) => Failure::Transport(e),
            };
            retries_taken = self.after_failure(failure, retries_taken).await?;
        }
    }

    async fn send_once(
        &self,
        call: &Call,
        retries_taken: u32,
        total_timeout: bool,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(ACCEPT, call.accept)
            .header("x-stainless-retry-count", retries_taken.to_string());
        if total_timeout {
            request = request.timeout(self.inner.timeout);
        }
        if call.openai {
            request = request.header(AUTHORIZATION, self.inner.bearer.clone());
        }
        if let Some(body) = &call.body {
            let content_type = call.content_type.as_deref().unwrap_or(JSON);
            request = request
                .header(CONTENT_TYPE, content_type)
                .body(body.clone());
        }
        request.send().await
    }

    /// Sleeps and returns the new retry count if `failure` is retryable and retries remain;
    /// otherwise turns it into the error to return.
    async fn after_failure(&self, failure: Failure, retries_taken: u32) -> Result<u32> {
        let can_retry = retries_taken < self.inner.max_retries;
        let delay = match failure {
            Failure::Transport(e) => {
                if !can_retry || e.is_builder() {
                    return Err(Error::Transport(e));
                }
                retry::retry_delay(None, retries_taken, SystemTime::now(), rand::random())
            }
            Failure::Status(response) => {
                let status = response.status();
                if !can_retry || !retry::should_retry_status(status.as_u16(), response.headers()) {
                    return Err(api_error(response).await);
                }
                retry::retry_delay(
                    Some(response.headers()),
                    retries_taken,
                    SystemTime::now(),
                    rand::random(),
                )
            }
        };
        tokio::time::sleep(delay).await;
        Ok(retries_taken + 1)
    }
}

enum Failure {
    Transport(reqwest::Error),
    Status(reqwest::Response),
}

fn check_id(id: &str) -> Result<&str> {
    if id.trim().is_empty() {
        return Err(Error::Invalid(
            "expected a non-empty value for `message_batch_id`".into(),
        ));
    }
    Ok(id)
}

/// Reads an error response into [`Error::Api`].
async fn api_error(response: reqwest::Response) -> Error {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
        #[serde(default)]
        request_id: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        message: Option<String>,
    }

    let status = response.status();
    let header_id = response
        .headers()
        .get("request-id")
        .or_else(|| response.headers().get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match response.bytes().await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let (kind, message, body_id) = match serde_json::from_str::<Envelope>(&body) {
        Ok(env) => (
            env.error.kind,
            env.error.message.unwrap_or_default(),
            env.request_id,
        ),
        Err(_) => {
            let text = body.trim();
            let message = if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                snippet(text.as_bytes())
            };
            (default_kind(status).to_owned(), message, None)
        }
    };
    Error::Api {
        status,
        kind,
        message,
        request_id: header_id.or(body_id),
        body,
    }
}

/// The start of a body, for error messages.
fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str, beta: bool) -> Client {
        Client::builder(base, "k")
            .beta_namespace(beta)
            .build()
            .unwrap()
    }

    #[test]
    fn endpoints_keep_a_base_path_and_encode_ids() {
        let c = client("http://h:1", false);
        assert_eq!(
            c.endpoint(&[]).unwrap().as_str(),
            "http://h:1/v1/messages/batches"
        );
        let c = client("http://h:1/proxy/", false);
        assert_eq!(
            c.endpoint(&["msgbatch_1", "cancel"]).unwrap().as_str(),
            "http://h:1/proxy/v1/messages/batches/msgbatch_1/cancel"
        );
        assert_eq!(
            c.endpoint(&["a/b?c"]).unwrap().as_str(),
            "http://h:1/proxy/v1/messages/batches/a%2Fb%3Fc"
        );
        let mut url = c.endpoint(&[]).unwrap();
        url.query_pairs_mut();
        assert_eq!(url.query(), Some(""), "why list() clears an empty query");
        let c = client("https://api.anthropic.com", true);
        assert_eq!(
            c.endpoint(&["x"]).unwrap().as_str(),
            "https://api.anthropic.com/v1/messages/batches/x?beta=true"
        );
    }

    #[test]
    fn results_urls_absolute_verbatim_relative_below_base() {
        let c = client("http://h:1/p", false);
        assert_eq!(
            c.resolve("https://other.example/v1/messages/batches/b/results?x=1")
                .unwrap()
                .as_str(),
            "https://other.example/v1/messages/batches/b/results?x=1"
        );
        assert_eq!(
            c.resolve("/v1/messages/batches/b/results")
                .unwrap()
                .as_str(),
            "http://h:1/p/v1/messages/batches/b/results"
        );
    }

    #[test]
    fn rejects_bad_configuration() {
        assert!(matches!(
            Client::new("not a url", "k"),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            Client::new("ftp://h", "k"),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            Client::new("http://h", "bad\nkey"),
            Err(Error::Invalid(_))
        ));
        let c = client("http://h", false);
        assert!(matches!(check_id(""), Err(Error::Invalid(_))));
        assert!(format!("{c:?}").contains("http://h"));
        let b = Client::builder("http://h", "sk-secret");
        assert!(!format!("{b:?}").contains("sk-secret"));
    }
}
