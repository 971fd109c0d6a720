//! The OpenAI Batch and Files surface (`/v1/files`, `/v1/batches`) on the same store and
//! dispatcher as the Message Batches routes: one module per concern, every failure an
//! [`OpenAiError`] in the OpenAI envelope. The behavioural reference is
//! `shared/spec/openai-batches.md`.

pub mod error;
pub mod jsonl;
pub mod multipart;

pub use error::OpenAiError;
