//! The results row's baseline: a minimal static file server (tokio fs reads streamed through
//! hyper in 256 KiB frames) so the loopback download limit is measured with the same client
//! and transport batchd's results download uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

/// Serves one file at every path until dropped.
pub struct StaticServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StaticServer {
    pub async fn start(file: PathBuf) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let file = Arc::new(file);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let file = file.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let file = file.clone();
                        async move {
                            let f = tokio::fs::File::open(file.as_ref()).await?;
                            let len = f.metadata().await?.len();
                            let stream =
                                ReaderStream::with_capacity(f, 256 * 1024).map_ok(Frame::data);
                            let body: BoxBody<Bytes, std::io::Error> =
                                StreamBody::new(stream).boxed();
                            let mut response = Response::new(body);
                            *response.status_mut() = StatusCode::OK;
                            response
                                .headers_mut()
                                .insert(http::header::CONTENT_LENGTH, len.into());
                            Ok::<_, std::io::Error>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}
