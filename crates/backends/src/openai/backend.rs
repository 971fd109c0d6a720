//! The `openai` backend's HTTP side: `POST {base_url}/v1/chat/completions` with the translated
//! request, and the translated answer back; and for the OpenAI surface, the line's body byte for
//! byte to `{base_url}{endpoint}` and the upstream's answer as it came (made compact, so that it
//! fits one line of the output file).

use async_trait::async_trait;
use batchd_domain::ErrorType;
use batchd_domain::openai::Endpoint;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::translate::{self, ChatOptions};
use crate::config::BackendSpec;
use crate::upstream::{self, Dialect, Upstream, endpoint_url};
use crate::{
    Backend, BackendError, BackendRequest, OpenAiAnswer, OpenAiRequest, compact_json,
    derived_request_id,
};

#[derive(Debug)]
pub struct OpenAiBackend {
    name: String,
    upstream: Upstream,
    options: ChatOptions,
    /// The URL of each of [`Endpoint::OPENAI`], in its order: parsed once.
    endpoints: Vec<(Endpoint, upstream::Endpoint)>,
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
            headers.insert(AUTHORIZATION, value);
        }
        let endpoints = Endpoint::OPENAI
            .into_iter()
            .map(|e| Ok((e, endpoint_url(spec, e.path())?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            name: spec.name.clone(),
            upstream: Upstream::new(spec, "/v1/chat/completions", headers, Dialect::OpenAi)?,
            options: ChatOptions { top_k: spec.top_k },
            endpoints,
        })
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, request: BackendRequest<'_>) -> Result<String, BackendError> {
        // A translation reads the whole request, so it is the one place a Messages request's
        // params become a `Value` tree; the params passed validation, so they are an object.
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(request.raw_params).map_err(|e| {
                BackendError::fatal(ErrorType::Api, format!("reading the params: {e}"))
            })?;
        let params = &params;
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

    /// Every endpoint is forwarded: what the upstream does not serve, it answers (a 404 becomes
    /// that line's error with the upstream's own words).
    fn serves_endpoint(&self, endpoint: Endpoint) -> bool {
        endpoint != Endpoint::Messages
    }

    async fn send_openai(&self, request: OpenAiRequest<'_>) -> Result<OpenAiAnswer, BackendError> {
        let Some((_, url)) = self.endpoints.iter().find(|(e, _)| *e == request.endpoint) else {
            return Err(BackendError::cannot_serve(&self.name, request.endpoint));
        };
        let (status, headers, body) = self
            .upstream
            .post_to(url, request.body.to_owned(), &[])
            .await?;
        let body = compact_json(&body).ok_or_else(|| self.upstream.bad_body("not JSON"))?;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(
                || derived_request_id(request.batch_id, request.custom_id),
                str::to_owned,
            );
        Ok(OpenAiAnswer {
            status_code: status.as_u16(),
            request_id,
            body,
        })
    }
}
