//! The `openai` backend's HTTP side: `POST {base_url}/v1/chat/completions` with the translated
//! request, and the translated answer back.

use async_trait::async_trait;
use batchd_domain::ErrorType;
use reqwest::header::{HeaderMap, HeaderValue};

use super::translate::{self, ChatOptions};
use crate::config::BackendSpec;
use crate::upstream::{Dialect, Upstream};
use crate::{Backend, BackendError, BackendRequest};

#[derive(Debug)]
pub struct OpenAiBackend {
    name: String,
    upstream: Upstream,
    options: ChatOptions,
}

impl OpenAiBackend {
    pub fn new(spec: &BackendSpec) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &spec.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    format!(
                        "backend `{}`: the upstream key is not a valid header value",
                        spec.name
                    )
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(Self {
            name: spec.name.clone(),
            upstream: Upstream::new(spec, "/v1/chat/completions", headers, Dialect::OpenAi)?,
            options: ChatOptions { top_k: spec.top_k },
        })
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, request: BackendRequest<'_>) -> Result<String, BackendError> {
        let params = &request.params.body;
        // What the upstream cannot express is refused before anything is sent: a different
        // answer than the one asked for would be worse than none.
        let chat = translate::chat_request(params, &self.options)
            .map_err(|e| BackendError::fatal(ErrorType::InvalidRequest, e.to_string()))?;
        let body = serde_json::to_string(&chat).map_err(|e| {
            BackendError::fatal(ErrorType::Api, format!("serializing the chat request: {e}"))
        })?;
        let answer = self.upstream.post(body, &[]).await?;
        translate::message_from_chat(&answer, params)
            .map_err(|e| self.upstream.bad_body(&e.to_string()))
    }
}
