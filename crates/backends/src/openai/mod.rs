//! The `openai` backend kind: upstreams speaking OpenAI's Chat Completions
//! (`/v1/chat/completions`): vLLM, SGLang, llama.cpp, Ollama, LiteLLM and OpenAI itself.
//! [`translate`] turns Messages requests into Chat Completions and the answers back; `backend`
//! sends them. The other direction, for `anthropic`-kind backends serving the OpenAI surface's
//! chat completions and for the CLI's conversion of OpenAI batch files: [`from_chat`] turns a
//! Chat Completions body into Messages params, and [`translate::chat_completion_from_message`]
//! the Message back into a `chat.completion`.

mod backend;
pub mod from_chat;
pub mod translate;

pub use backend::OpenAiBackend;
