//! The `openai` backend kind: upstreams speaking OpenAI's Chat Completions
//! (`/v1/chat/completions`): vLLM, SGLang, llama.cpp, Ollama, LiteLLM and OpenAI itself.
//! [`translate`] turns Messages requests into Chat Completions and the answers back; `backend`
//! sends them.

mod backend;
pub mod translate;

pub use backend::OpenAiBackend;
