//! The commands' side of the control API ([`ironpost_api`]): HTTP/1.1 over
//! the daemon's Unix socket with hyper, one request per connection.
//! Streamed answers (NDJSON) are read line by line as they arrive, so a
//! listing of any length holds one line at a time here.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response,
    body::{Bytes, Incoming},
    header,
};
use hyper_util::rt::TokioIo;
use ironpost_api::{ApiError, ErrorKind, exit};
use serde::{Serialize, de::DeserializeOwned};

/// Why a command could not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket file.
    #[error(
        "no ironpost daemon is running: there is no control socket at {} (start one with \
         `ironpost run`, or pass --socket)", .0.display()
    )]
    NoSocket(PathBuf),
    /// A socket file nobody listens on.
    #[error(
        "no ironpost daemon is running: the control socket {} is left over from one that \
         stopped", .0.display()
    )]
    Stale(PathBuf),
    /// The socket is root's.
    #[error("permission denied on the control socket {}: it is for root only", .0.display())]
    Permission(PathBuf),
    /// Connecting failed otherwise.
    #[error("connecting to the daemon at {}", .path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange broke off (the daemon stopped mid-answer).
    #[error("talking to the daemon (see its log)")]
    Http(#[from] hyper::Error),
    /// The answer is not what the API defines.
    #[error("the daemon sent something unexpected: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ClientError {
    /// The command's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoSocket(_) | Self::Stale(_) => exit::NO_DAEMON,
            Self::Permission(_) => exit::PERMISSION,
            Self::Api(e) => e.kind.exit_code(),
            Self::Connect { .. } | Self::Http(_) | Self::Protocol(_) => exit::FAILURE,
        }
    }
}

/// A client of one daemon.
pub struct Client {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the daemon at `socket` (nothing is connected yet).
    pub fn new(socket: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime with no special settings builds");
        Self {
            socket: socket.to_owned(),
            rt,
        }
    }

    /// `GET path`, answered with one JSON value.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>)
    }

    /// `method path` with a JSON body (or none), answered with one JSON
    /// value.
    pub fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Bytes::from(
                serde_json::to_vec(b)
                    .map_err(|e| ClientError::Protocol(format!("encoding the request: {e}")))?,
            ),
            None => Bytes::new(),
        };
        self.rt.block_on(async {
            let resp = self.request(method, path, body).await?;
            let bytes = resp.into_body().collect().await?.to_bytes();
            serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&bytes)))
            })
        })
    }

    /// `method path` with a JSON body (or none), answered with NDJSON:
    /// the lines are read as they come.
    pub fn stream<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Lines<'_>, ClientError> {
        let body = match body {
            Some(b) => Bytes::from(
                serde_json::to_vec(b)
                    .map_err(|e| ClientError::Protocol(format!("encoding the request: {e}")))?,
            ),
            None => Bytes::new(),
        };
        let resp = self.rt.block_on(self.request(method, path, body))?;
        Ok(Lines {
            client: self,
            body: resp.into_body(),
            buf: Vec::new(),
            pos: 0,
            done: false,
        })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| {
                let path = self.socket.clone();
                match e.kind() {
                    std::io::ErrorKind::NotFound => ClientError::NoSocket(path),
                    std::io::ErrorKind::ConnectionRefused => ClientError::Stale(path),
                    std::io::ErrorKind::PermissionDenied => ClientError::Permission(path),
                    _ => ClientError::Connect { path, source: e },
                }
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("control connection: {e}");
            }
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "ironpost")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Protocol(format!("building the request: {e}")))?;
        let resp = sender.send_request(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Err(match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => ClientError::Api(e),
            Err(_) => ClientError::Api(ApiError::new(
                ErrorKind::Internal,
                format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
            )),
        })
    }
}

/// The lines of a streamed answer, read as they arrive.
pub struct Lines<'a> {
    client: &'a Client,
    body: Incoming,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Lines<'_> {
    /// The next line as a `T`; none at the end of the answer.
    pub fn next<T: DeserializeOwned>(&mut self) -> Option<Result<T, ClientError>> {
        loop {
            if let Some(n) = self.buf[self.pos..].iter().position(|b| *b == b'\n') {
                let line = &self.buf[self.pos..self.pos + n];
                self.pos += n + 1;
                return Some(serde_json::from_slice(line).map_err(|e| {
                    ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(line)))
                }));
            }
            if self.done {
                if self.pos < self.buf.len() {
                    self.pos = self.buf.len();
                    return Some(Err(ClientError::Protocol(
                        "the answer ends in the middle of a line".into(),
                    )));
                }
                return None;
            }
            // Keep only the unread part.
            self.buf.drain(..self.pos);
            self.pos = 0;
            match self.client.rt.block_on(self.body.frame()) {
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
