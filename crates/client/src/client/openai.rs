//! The OpenAI Batch and Files calls of [`Client`]: upload a file, create, retrieve, list (with
//! auto-pagination) and cancel batches, and download a file's content. They use the same retry
//! loop and error type as the Message Batches calls, with the key sent as `Authorization: Bearer`
//! and the wire types of [`batchd_wire::openai`].

use std::collections::VecDeque;

use batchd_wire::openai::{BatchList, CreateOpenAiBatch, FileObject, OpenAiBatch};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use reqwest::{Method, Url};

use super::{Call, Client, JSON};
use crate::error::{Error, Result};
use crate::jsonl::{self, Line};

/// The multipart boundary of uploads: never inside a JSONL file's bytes in practice, and the
/// server parses the body strictly by it.
const BOUNDARY: &str = "batchd-client-7c1f0d2a9e4b4b53a6e1";

/// Query parameters of `GET /v1/batches`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenAiListParams {
    /// Page size, 1–100 (server default 20).
    pub limit: Option<u32>,
    /// Return the page just older than this batch.
    pub after: Option<String>,
}

impl Client {
    /// `POST /v1/files`: uploads `content` as `filename` with `purpose` (e.g. `batch`).
    pub async fn upload_file(
        &self,
        filename: &str,
        purpose: &str,
        content: impl Into<Bytes>,
    ) -> Result<FileObject> {
        let content: Bytes = content.into();
        if filename.contains(['"', '\r', '\n']) {
            return Err(Error::Invalid(format!(
                "the file name {filename:?} cannot be sent in a multipart header"
            )));
        }
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/jsonl\r\n\r\n"
        );
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let mut body = Vec::with_capacity(head.len() + content.len() + tail.len());
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&content);
        body.extend_from_slice(tail.as_bytes());
        let call = self.openai_call(Method::POST, &["files"], Some(body.into()))?;
        let call = Call {
            content_type: Some(format!("multipart/form-data; boundary={BOUNDARY}")),
            ..call
        };
        self.json_of(call).await
    }

    /// `GET /v1/files/{id}/content`: the file's bytes as they arrive.
    pub async fn file_content(&self, id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let mut call = self.openai_call(
            Method::GET,
            &["files", check(id, "file_id")?, "content"],
            None,
        )?;
        call.accept = "application/octet-stream";
        let response = self.execute(&call).await?;
        Ok(response.bytes_stream().map_err(Error::Transport).boxed())
    }

    /// [`Client::file_content`] split into lines.
    pub async fn file_lines(&self, id: &str) -> Result<BoxStream<'static, Result<Line>>> {
        let bytes = self.file_content(id).await?;
        Ok(jsonl::split_lines(bytes, self.inner.max_line_bytes))
    }

    /// `POST /v1/batches`.
    pub async fn create_openai_batch(&self, body: &CreateOpenAiBatch) -> Result<OpenAiBatch> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Invalid(format!("cannot serialise the batch: {e}")))?;
        let call = self.openai_call(Method::POST, &["batches"], Some(body.into()))?;
        self.json_of(call).await
    }

    /// `GET /v1/batches/{id}`.
    pub async fn retrieve_openai_batch(&self, id: &str) -> Result<OpenAiBatch> {
        let call = self.openai_call(Method::GET, &["batches", check(id, "batch_id")?], None)?;
        self.json_of(call).await
    }

    /// `POST /v1/batches/{id}/cancel`.
    pub async fn cancel_openai_batch(&self, id: &str) -> Result<OpenAiBatch> {
        let call = self.openai_call(
            Method::POST,
            &["batches", check(id, "batch_id")?, "cancel"],
            None,
        )?;
        self.json_of(call).await
    }

    /// `GET /v1/batches`: one page, newest first.
    pub async fn list_openai_batches(&self, params: &OpenAiListParams) -> Result<BatchList> {
        let mut call = self.openai_call(Method::GET, &["batches"], None)?;
        {
            let mut q = call.url.query_pairs_mut();
            if let Some(limit) = params.limit {
                q.append_pair("limit", &limit.to_string());
            }
            if let Some(after) = &params.after {
                q.append_pair("after", after);
            }
        }
        if call.url.query() == Some("") {
            call.url.set_query(None);
        }
        self.json_of(call).await
    }

    /// Every batch from `params` on, following `last_id` while `has_more`, as the SDKs'
    /// auto-pagination does.
    pub fn list_all_openai_batches(
        &self,
        params: OpenAiListParams,
    ) -> BoxStream<'static, Result<OpenAiBatch>> {
        struct State {
            client: Client,
            next: Option<OpenAiListParams>,
            ready: VecDeque<OpenAiBatch>,
        }
        let state = State {
            client: self.clone(),
            next: Some(params),
            ready: VecDeque::new(),
        };
        stream::unfold(state, |mut st| async move {
            loop {
                if let Some(batch) = st.ready.pop_front() {
                    return Some((Ok(batch), st));
                }
                let params = st.next.take()?;
                match st.client.list_openai_batches(&params).await {
                    Err(e) => return Some((Err(e), st)),
                    Ok(page) => {
                        if page.has_more
                            && let Some(last) = page.last_id.clone().filter(|l| !l.is_empty())
                        {
                            st.next = Some(OpenAiListParams {
                                after: Some(last),
                                ..params
                            });
                        }
                        st.ready.extend(page.data);
                    }
                }
            }
        })
        .boxed()
    }

    /// A call to `{base}/v1/{segments…}` on the OpenAI routes.
    fn openai_call(&self, method: Method, segments: &[&str], body: Option<Bytes>) -> Result<Call> {
        let mut url: Url = self.inner.base.clone();
        url.set_fragment(None);
        url.set_query(None);
        url.path_segments_mut()
            .map_err(|()| Error::Invalid("the base URL cannot have a path".into()))?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        Ok(Call {
            method,
            url,
            body,
            accept: JSON,
            content_type: None,
            openai: true,
        })
    }
}

fn check<'a>(id: &'a str, name: &str) -> Result<&'a str> {
    if id.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "expected a non-empty value for `{name}`"
        )));
    }
    Ok(id)
}
