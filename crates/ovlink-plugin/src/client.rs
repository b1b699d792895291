//! A small blocking client of the plugin protocol over a unix socket (hyper's HTTP/1.1
//! client on a private current-thread runtime), for tests and diagnostics. One connection per
//! call. It never retries: a failed call is reported as is.

use crate::error::PluginError;
use crate::protocol::ACCEPT;
use crate::stream::{ChannelBody, ChannelWriter};
use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A client of one plugin socket.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the plugin listening on `socket`.
    pub fn new(socket: &Path) -> Result<Self, PluginError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| PluginError::Setup {
                what: "the client runtime",
                source,
            })?;
        Ok(Client {
            socket: socket.to_path_buf(),
            rt,
        })
    }

    /// `POST /method` with `body`; returns the status and the whole answer body.
    pub fn call(&self, method: &str, body: &[u8]) -> Result<(u16, Vec<u8>), PluginError> {
        let body = Full::new(Bytes::copy_from_slice(body));
        self.rt.block_on(exchange(&self.socket, method, body))
    }

    /// `POST /method` with a JSON value; returns the status and the parsed answer
    /// (`Null` for an empty or non-JSON body).
    pub fn call_json(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), PluginError> {
        let bytes = serde_json::to_vec(body).map_err(|e| PluginError::Request {
            method: method.to_string(),
            reason: e.to_string(),
        })?;
        let (status, out) = self.call(method, &bytes)?;
        Ok((
            status,
            serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// `POST /method` streaming `reader` as the request body (chunked, never held whole).
    pub fn send_reader(
        &self,
        method: &str,
        mut reader: impl Read + Send + 'static,
    ) -> Result<(u16, Vec<u8>), PluginError> {
        let (tx, rx) = tokio::sync::mpsc::channel(crate::stream::CHANNEL_DEPTH);
        let feeder = std::thread::spawn(move || {
            let mut w = ChannelWriter::new(tx);
            match std::io::copy(&mut reader, &mut w) {
                Ok(_) => {
                    let _ = w.finish();
                }
                Err(e) => w.fail(e.to_string()),
            }
        });
        let r = self
            .rt
            .block_on(exchange(&self.socket, method, ChannelBody::new(None, rx)));
        let _ = feeder.join();
        r
    }
}

async fn exchange<B>(socket: &Path, method: &str, body: B) -> Result<(u16, Vec<u8>), PluginError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = if method.starts_with('/') {
        method.to_string()
    } else {
        format!("/{method}")
    };
    let http = |source| PluginError::Http {
        method: path.clone(),
        source,
    };
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| PluginError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post(path.as_str())
        .header(hyper::header::HOST, "plugin")
        .header(hyper::header::ACCEPT, ACCEPT)
        .body(body)
        .map_err(|e| PluginError::Request {
            method: path.clone(),
            reason: e.to_string(),
        })?;
    let resp = sender.send_request(req).await.map_err(http)?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map_err(http)?.to_bytes();
    drop(sender);
    let _ = driver.await;
    Ok((status, bytes.to_vec()))
}
