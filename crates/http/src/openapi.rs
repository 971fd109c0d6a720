//! The OpenAPI 3.1 document of this server, served at `GET /openapi.json` (unauthenticated).
//!
//! It is generated from the code: each handler carries a `#[utoipa::path]` attribute (method,
//! path, parameters, bodies), the wire types derive `ToSchema` (behind `batchd-wire`'s `openapi`
//! feature), and [`ApiDoc`] lists the handlers. What every route shares because of a layer rather
//! than a handler is added once by [`Common`]: the `request-id` header (the request-id layer), the
//! error responses of the authentication layer, the fallbacks and the store, and the security
//! schemes.
//!
//! The rendered document is committed as `crates/http/openapi.json` and a test fails when the two
//! differ. After an intended API change, refresh it with
//! `UPDATE_OPENAPI=1 cargo test -p batchd-http openapi` and commit the file.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, Object, Ref, RefOr, Type};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};

use crate::error::ErrorCode;
use crate::{batches, create, ops};

const DESCRIPTION: &str = "\
batchd is a self-hosted server compatible with Anthropic's Message Batches API: the six \
`/v1/messages/batches` endpoints accept the same requests and return the same JSON objects, \
status codes and error envelopes, so the official SDKs work against it unchanged.

Routes under `/v1` need an API key (`x-api-key`, or `Authorization: Bearer`) and the \
`anthropic-version` header. `GET /v1/messages/batches/{message_batch_id}/progress` is a batchd \
extension that Anthropic's API does not have. `/healthz`, `/readyz`, `/metrics` and \
`/openapi.json` are unauthenticated operator endpoints.

Every response carries a `request-id` header. Unknown paths answer 404 and known paths called \
with another method answer 405, both with the error envelope.";

/// The whole document; see the module docs.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "batchd",
        version = env!("CARGO_PKG_VERSION"),
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        create::create,
        batches::list,
        batches::retrieve,
        batches::delete,
        batches::cancel,
        batches::rerun,
        batches::results,
        batches::progress,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        document,
    ),
    components(
        schemas(batchd_wire::ErrorEnvelope),
        responses(
            InvalidRequestError,
            AuthenticationError,
            PermissionError,
            NotFoundError,
            MethodNotAllowed,
            CreateInvalidRequest,
            RequestTooLarge,
            RateLimitError,
            InternalError,
            OverloadedError,
            CreateOverloaded,
        ),
    ),
    modifiers(&Common),
    tags(
        (name = "Message Batches", description = "Anthropic's Message Batches API."),
        (name = "batchd extensions", description = "Routes that Anthropic's API does not have."),
        (name = "Operations", description = "Unauthenticated endpoints for operators."),
    ),
)]
pub struct ApiDoc;

/// `GET /openapi.json`: the document, byte for byte the committed `crates/http/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "Operations",
    summary = "This OpenAPI document",
    description = "The OpenAPI 3.1 description of this server's routes, generated from its code.",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server.", body = Object)),
)]
pub async fn document() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json(),
    )
        .into_response()
}

/// The document as served and committed: pretty-printed, object keys sorted at every level (so
/// the text cannot depend on map types or on serde_json's `preserve_order` being enabled by some
/// other crate in the build), newline-terminated. Rendered once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(render)
}

fn render() -> String {
    // Both steps only fail for maps with non-string keys, which the document has none of.
    let mut value = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document is JSON");
    value.sort_all_objects();
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value serialises");
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------------------------
// Parameters shared by the `/v1` routes. These types only describe requests for the document;
// the handlers and the authentication layer read the same values from the request themselves.

/// The path segment naming a batch.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BatchIdPath {
    /// ID of the Message Batch.
    #[param(example = "msgbatch_01Kk2gPdvEq73ifNWGPfvmyd")]
    pub message_batch_id: String,
}

/// Headers every `/v1` route reads (in the authentication layer, before the handler runs).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ApiHeaders {
    /// The API key; `Authorization: Bearer <key>` is accepted instead (see the security schemes).
    #[param(rename = "x-api-key", nullable = false)]
    pub x_api_key: Option<String>,
    /// API version. A batch keeps the version of its create: its requests are validated under it.
    // Its values, `api_version::VERSIONS`, are added by `add_common`.
    #[param(rename = "anthropic-version", example = "2023-06-01")]
    pub anthropic_version: String,
    /// Beta features, comma-separated and/or as repeated headers: published beta names (such as
    /// `message-batches-2024-09-24`), and any the operator added with `--extra-beta`. On create
    /// they apply to every request of the batch. Any other name is refused with a 400.
    // Its pattern, `auth::beta_header_pattern()`, is added by `add_common`.
    #[param(rename = "anthropic-beta", nullable = false)]
    pub anthropic_beta: Option<String>,
}

/// The `?beta=true` form of every batch route, which the SDKs' beta namespace calls.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BetaQuery {
    /// Accepted and ignored, whatever its value: the beta and non-beta forms behave the same.
    /// The SDKs send `true`.
    #[param(nullable = false, example = "true")]
    pub beta: Option<String>,
}

/// Paging of the list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items per page.
    #[param(minimum = 1, maximum = 1000, default = 20, nullable = false)]
    pub limit: Option<u32>,
    /// Return the page immediately before this batch (newer batches). With `after_id` too, the
    /// page holds only batches between the two, read from `after_id` on.
    #[param(nullable = false)]
    pub before_id: Option<String>,
    /// Return the page immediately after this batch (older batches).
    #[param(nullable = false)]
    pub after_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Schemas that only exist in the document.

/// The constant `"message_batch_progress"` type tag of the progress object.
#[derive(ToSchema)]
pub enum ProgressType {
    #[schema(rename = "message_batch_progress")]
    MessageBatchProgress,
}

/// Body of `/healthz` (`{"status":"ok"}`) and `/readyz` (`{"status":"ready"}`, or
/// `{"status":"unavailable","reason":"storage"}` with a 503).
#[derive(ToSchema)]
pub struct OpsStatus {
    /// `ok`, `ready` or `unavailable`.
    #[schema(example = "ok")]
    pub status: String,
    /// What is unavailable; only with `unavailable`.
    #[schema(nullable = false, example = "storage")]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Error responses: every one is the error envelope, with the `request-id` and `x-should-retry`
// headers that `ApiError` sets.

macro_rules! error_response {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $description:expr, $message:expr) => {
        error_response!($(#[$doc])* $name, $kind, $description, $message, None);
    };
    ($(#[$doc:meta])* $name:ident, $kind:literal, $description:expr, $message:expr, $code:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                let code: Option<ErrorCode> = $code;
                (
                    stringify!($name),
                    error(stringify!($name), $kind, &$description, $message, code),
                )
            }
        }
    };
}

error_response!(
    /// 400.
    InvalidRequestError,
    "invalid_request_error",
    "Invalid request: a missing or unsupported `anthropic-version`, an unknown `anthropic-beta`, \
     an invalid body or query, a create body declared as another type than JSON, or an operation \
     the batch's state does not allow (deleting or canceling at the wrong time).",
    "anthropic-version: header is required"
);
error_response!(
    /// 401.
    AuthenticationError,
    "authentication_error",
    "The API key is missing or unknown.",
    "x-api-key header is required"
);
error_response!(
    /// 403.
    PermissionError,
    "permission_error",
    "`anthropic-workspace-id` names another workspace than the key's.",
    "anthropic-workspace-id does not match the workspace of this API key."
);
error_response!(
    /// 404.
    NotFoundError,
    "not_found_error",
    "The batch does not exist in the key's workspace (or was deleted), its results are not \
     available (not ended yet, or archived), or the path is unknown.",
    "Message Batch msgbatch_01AHxNhUeZwskhx38tGz1QVj not found."
);
error_response!(
    /// 405.
    MethodNotAllowed,
    "invalid_request_error",
    "The path exists, but not with this method.",
    "Method not allowed"
);
error_response!(
    /// 400 of a create.
    CreateInvalidRequest,
    "invalid_request_error",
    "Invalid request: as for every route (a missing or unsupported `anthropic-version`, a \
     malformed `anthropic-beta`), or an invalid body. Some causes carry `error.details.error_code`: \
     `request_body_timeout` when the body arrived slower than the server's body timeout allows \
     (`body_timeout`, 30 s by default, then at least 64 KiB/s on the wire); \
     `request_body_encoding_unsupported` for a `Content-Encoding` other than `gzip`, `x-gzip`, \
     `deflate`, `br` or `identity`; `request_body_encoding_invalid` for a body its \
     `Content-Encoding` cannot decode. Nothing was created.",
    crate::create::BODY_TOO_SLOW,
    Some(ErrorCode::RequestBodyTimeout)
);
error_response!(
    /// 413.
    RequestTooLarge,
    "request_too_large",
    "The body is larger than the server's limit (256 MB by default). A compressed body is held to \
     the same limit both as sent and once decoded; over it once decoded, the error has \
     `error.details.error_code` `request_body_too_large_after_decoding`.",
    "Request exceeds the maximum size"
);
error_response!(
    /// 429.
    RateLimitError,
    "rate_limit_error",
    format!(
        "A quota: the workspace made more batch API calls than its rate limit allows (`rate_limit` \
         per minute; off by default), a create would take the workspace's requests waiting to be \
         processed over its queue cap (`queue_cap`, {} by default), or the client's address \
         sent too many requests with a missing or invalid key (`auth_failure_limit` in \
         `auth_failure_window`). Wait `retry-after` seconds. A batch larger than the queue cap \
         itself can never be accepted: it gets `x-should-retry: false` and no `retry-after`.",
        thousands(crate::quota::QuotaConfig::default().queue_cap)
    ),
    "This request would exceed your workspace's rate limit of 1000 Message Batches API requests per minute."
);
error_response!(
    /// 500.
    InternalError,
    "api_error",
    "An internal error; details are logged by the server, never returned.",
    "Internal server error"
);
error_response!(
    /// 529.
    OverloadedError,
    "overloaded_error",
    "Storage is busy or full for the moment; retry later.",
    crate::error::OVERLOADED
);
error_response!(
    /// 529 of a create.
    CreateOverloaded,
    "overloaded_error",
    "Storage is busy or full for the moment, or the server's budget of creates in progress \
     (`max_concurrent_creates`) stayed full for `create_queue_timeout`; retry after `retry-after` \
     seconds.",
    crate::error::OVERLOADED
);

/// `n` with a comma between each group of three digits, as the texts above write figures.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn error(
    name: &str,
    kind: &str,
    description: &str,
    message: &str,
    code: Option<ErrorCode>,
) -> RefOr<utoipa::openapi::Response> {
    // As `ApiError` sets the header: 429 and 5xx are worth retrying.
    let retry = matches!(
        name,
        "RateLimitError" | "InternalError" | "OverloadedError" | "CreateOverloaded"
    );
    let mut example = serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    });
    if let Some(code) = code {
        example["error"]["details"] = serde_json::json!({"error_code": code.as_str()});
    }
    let mut builder = ResponseBuilder::new()
        .description(description)
        .header("request-id", request_id_header());
    let wait = match name {
        "RateLimitError" => Some(format!(
            "Whole seconds to wait before retrying (at least 1; {} for a full queue).",
            crate::quota::QUEUE_FULL_RETRY_AFTER.as_secs()
        )),
        "CreateOverloaded" => Some("Seconds to wait before trying again.".to_owned()),
        _ => None,
    };
    if let Some(wait) = wait {
        builder = builder.header(
            "retry-after",
            HeaderBuilder::new()
                .schema(Object::with_type(Type::Integer))
                .description(Some(wait.as_str()))
                .build(),
        );
    }
    builder
        .header(
            "x-should-retry",
            HeaderBuilder::new()
                .schema(Object::with_type(Type::String))
                .description(Some(if retry {
                    "`true`: the SDKs retry this response."
                } else {
                    "`false`: retrying the same request will not help."
                }))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .example(Some(example))
                .build(),
        )
        .build()
        .into()
}

fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(Object::with_type(Type::String))
        .description(Some(
            "Unique id of this request (`req_` + 24 characters); error bodies repeat it as \
             `request_id`.",
        ))
        .build()
}

/// Error responses every `/v1` operation can give, from the authentication layer (400, 401,
/// 403, and 429 for its quotas), the batch lookup and the fallbacks (404, 405) and the store
/// (500, 529).
fn v1_errors() -> [(&'static str, &'static str); 8] {
    [
        ("400", InvalidRequestError::response().0),
        ("401", AuthenticationError::response().0),
        ("403", PermissionError::response().0),
        ("404", NotFoundError::response().0),
        ("405", MethodNotAllowed::response().0),
        ("429", RateLimitError::response().0),
        ("500", InternalError::response().0),
        ("529", OverloadedError::response().0),
    ]
}

/// Adds what routes share because of layers rather than handlers; see the module docs.
pub struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "ApiKeyAuth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key of the server (given at start-up or created with `batchd keys`).",
            ))),
        );
        components.add_security_scheme(
            "BearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The same API key, sent as `Authorization: Bearer <key>`.",
                    ))
                    .build(),
            ),
        );

        fix_schemas(components);

        for (path, item) in doc.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                add_common(operation, v1);
            }
        }
    }
}

/// What the derives cannot say: create bodies refuse unknown keys (the server's own parser does,
/// while the wire types stay lenient for clients), and the list page refers to `MessageBatch`
/// rather than inlining a copy (utoipa inlines generic arguments).
fn fix_schemas(components: &mut Components) {
    for name in ["CreateBatch", "BatchRequest"] {
        if let Some(object) = object_mut(components, name) {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
    let data = object_mut(components, "ListPage_MessageBatch")
        .and_then(|page| page.properties.get_mut("data"));
    if let Some(RefOr::T(Schema::Array(data))) = data {
        data.items =
            ArrayItems::RefOrSchema(Box::new(Ref::from_schema_name("MessageBatch").into()));
    }
}

fn object_mut<'a>(components: &'a mut Components, name: &str) -> Option<&'a mut Object> {
    match components.schemas.get_mut(name) {
        Some(RefOr::T(Schema::Object(object))) => Some(object),
        _ => None,
    }
}

/// The headers of every `/v1` response after authentication when the workspace has a rate
/// limit, as the API documents them.
const RATE_LIMIT_HEADERS: [(&str, Type, &str); 3] = [
    (
        "anthropic-ratelimit-requests-limit",
        Type::Integer,
        "Batch API calls the workspace may make per minute (only when a rate limit is set).",
    ),
    (
        "anthropic-ratelimit-requests-remaining",
        Type::Integer,
        "Calls the workspace could make right now (only when a rate limit is set).",
    ),
    (
        "anthropic-ratelimit-requests-reset",
        Type::String,
        "RFC 3339 time at which the workspace's allowance is full again (only when a rate limit \
         is set).",
    ),
];

fn add_common(operation: &mut Operation, v1: bool) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema else {
            continue;
        };
        match parameter.name.as_str() {
            "anthropic-beta" => schema.pattern = Some(crate::auth::beta_header_pattern()),
            "anthropic-version" => {
                schema.enum_values = Some(
                    batchd_domain::api_version::VERSIONS
                        .iter()
                        .map(|v| v.name.into())
                        .collect(),
                );
            }
            _ => {}
        }
    }
    let responses = &mut operation.responses.responses;
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .insert("request-id".into(), request_id_header());
            if v1 {
                response.headers.insert(
                    "anthropic-workspace-id".into(),
                    HeaderBuilder::new()
                        .schema(Object::with_type(Type::String))
                        .description(Some("The workspace of the API key."))
                        .build(),
                );
                response.headers.insert(
                    "anthropic-organization-id".into(),
                    HeaderBuilder::new()
                        .schema(Object::with_type(Type::String))
                        .description(Some(
                            "A UUID standing for the organization of the API key: derived from \
                             the workspace, the same in every process.",
                        ))
                        .build(),
                );
                for (name, ty, description) in RATE_LIMIT_HEADERS {
                    response.headers.insert(
                        name.into(),
                        HeaderBuilder::new()
                            .schema(Object::with_type(ty))
                            .description(Some(description))
                            .build(),
                    );
                }
            }
        }
    }
    let errors: &[_] = if v1 {
        &v1_errors()
    } else {
        &[("405", MethodNotAllowed::response().0)]
    };
    for (status, name) in errors {
        responses
            .entry((*status).into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

    /// Every (method, path) the router serves, in the document's spelling of the id segment.
    const ROUTES: &[(&str, &str)] = &[
        ("post", "/v1/messages/batches"),
        ("get", "/v1/messages/batches"),
        ("get", "/v1/messages/batches/{message_batch_id}"),
        ("delete", "/v1/messages/batches/{message_batch_id}"),
        ("post", "/v1/messages/batches/{message_batch_id}/cancel"),
        ("post", "/v1/messages/batches/{message_batch_id}/rerun"),
        ("get", "/v1/messages/batches/{message_batch_id}/results"),
        ("get", "/v1/messages/batches/{message_batch_id}/progress"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ];

    fn doc() -> Value {
        serde_json::from_str(json()).unwrap()
    }

    #[test]
    fn figures_are_grouped_by_thousands() {
        assert_eq!(super::thousands(500_000), "500,000");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
        assert_eq!(super::thousands(999), "999");
    }

    #[test]
    fn openapi_snapshot_is_up_to_date() {
        let generated = json();
        if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v != "0") {
            std::fs::write(SNAPSHOT, generated).expect("write crates/http/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
            panic!(
                "crates/http/openapi.json is out of date with the code (first difference at line \
                 {}).\nIf the API change is intended, regenerate it and commit the file:\n\n    \
                 UPDATE_OPENAPI=1 cargo test -p batchd-http openapi\n",
                line + 1
            );
        }
    }

    #[test]
    fn openapi_is_3_1_with_title_version_and_compatibility_note() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(doc["info"]["title"], "batchd");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            doc["info"]["description"]
                .as_str()
                .unwrap()
                .contains("compatible with Anthropic's Message Batches API")
        );
    }

    #[test]
    fn openapi_documents_exactly_the_router_paths() {
        let doc = doc();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let expected: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented, expected);
        // Operation ids are unique, so generated clients get distinct method names.
        let ids: BTreeSet<&str> = ROUTES
            .iter()
            .map(|(m, p)| doc["paths"][p][m]["operationId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), ROUTES.len());
    }

    #[test]
    fn openapi_v1_routes_need_a_key_and_others_do_not() {
        let doc = doc();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["ApiKeyAuth"]["type"], "apiKey");
        assert_eq!(schemes["ApiKeyAuth"]["in"], "header");
        assert_eq!(schemes["ApiKeyAuth"]["name"], "x-api-key");
        assert!(doc.get("security").is_none(), "no global security");
        for (method, path) in ROUTES {
            let operation = &doc["paths"][path][method];
            let secured = operation.get("security").is_some();
            assert_eq!(secured, path.starts_with("/v1/"), "{method} {path}");
            let statuses = operation["responses"].as_object().unwrap();
            assert!(statuses.contains_key("405"), "{method} {path}");
            if path.starts_with("/v1/") {
                for status in ["400", "401", "403", "404", "500", "529"] {
                    assert!(statuses.contains_key(status), "{method} {path} {status}");
                }
                let params: Vec<&str> = operation["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                for name in ["x-api-key", "anthropic-version", "anthropic-beta", "beta"] {
                    assert!(params.contains(&name), "{method} {path} {name}");
                }
                // As the server reads them: betas of one shape, `beta` any value.
                let param = |name: &str| {
                    operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["name"] == name)
                        .unwrap()["schema"]
                        .clone()
                };
                assert_eq!(
                    param("anthropic-beta")["pattern"],
                    crate::auth::beta_header_pattern()
                );
                assert_eq!(param("beta")["type"], "string");
                let versions: Vec<&str> = batchd_domain::api_version::VERSIONS
                    .iter()
                    .map(|v| v.name)
                    .collect();
                assert_eq!(
                    param("anthropic-version")["enum"],
                    serde_json::json!(versions)
                );
            }
            let ok = &statuses["200"];
            assert!(ok["headers"].get("request-id").is_some(), "{method} {path}");
        }
    }

    #[test]
    fn openapi_describes_create_body_and_list_paging() {
        let doc = doc();
        let create = &doc["paths"]["/v1/messages/batches"]["post"];
        assert!(create["requestBody"]["required"].as_bool().unwrap());
        assert!(create["responses"].get("413").is_some());
        assert_eq!(
            create["responses"]["400"]["$ref"],
            "#/components/responses/CreateInvalidRequest"
        );
        assert!(create["responses"].get("408").is_none());
        let details = &doc["components"]["responses"]["CreateInvalidRequest"]["content"]["application/json"]
            ["example"]["error"]["details"];
        assert_eq!(details["error_code"], "request_body_timeout");
        let schemas = &doc["components"]["schemas"];
        let requests = &schemas["CreateBatch"]["properties"]["requests"];
        assert_eq!(requests["minItems"], 1);
        assert_eq!(requests["maxItems"], batchd_domain::batch::MAX_REQUESTS);
        assert_eq!(schemas["CreateBatch"]["additionalProperties"], false);
        assert_eq!(schemas["BatchRequest"]["additionalProperties"], false);
        assert_eq!(
            schemas["ListPage_MessageBatch"]["properties"]["data"]["items"]["$ref"],
            "#/components/schemas/MessageBatch"
        );
        assert_eq!(
            schemas["ErrorBody"]["properties"]["details"]["$ref"],
            "#/components/schemas/ErrorDetails"
        );
        assert!(schemas["ErrorDetails"]["properties"]["error_code"].is_object());
        let custom_id = &schemas["BatchRequest"]["properties"]["custom_id"];
        assert_eq!(custom_id["pattern"], "^[a-zA-Z0-9_-]{1,64}$");
        assert_eq!(
            schemas["MessageBatch"]["required"]
                .as_array()
                .unwrap()
                .len(),
            10,
            "every MessageBatch key is always present"
        );
        let list = &doc["paths"]["/v1/messages/batches"]["get"];
        let limit = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["minimum"], 1);
        assert_eq!(limit["schema"]["maximum"], 1000);
        assert_eq!(limit["schema"]["default"], 20);
        let results = &doc["paths"]["/v1/messages/batches/{message_batch_id}/results"]["get"];
        assert!(results["responses"]["200"]["content"]["application/x-jsonl"].is_object());
        let progress = &doc["paths"]["/v1/messages/batches/{message_batch_id}/progress"]["get"];
        assert!(
            progress["description"]
                .as_str()
                .unwrap()
                .contains("batchd extension")
        );
    }

    #[test]
    fn openapi_error_responses_use_the_envelope() {
        let doc = doc();
        let responses = doc["components"]["responses"].as_object().unwrap();
        assert_eq!(responses.len(), 11);
        assert!(responses["RateLimitError"]["headers"]["retry-after"].is_object());
        assert!(responses["CreateOverloaded"]["headers"]["retry-after"].is_object());
        for (name, response) in responses {
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorEnvelope",
                "{name}"
            );
            assert!(response["headers"].get("request-id").is_some(), "{name}");
        }
    }
}
