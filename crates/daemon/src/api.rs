//! The daemon's side of the control API ([`ironpost_api`]): HTTP/1.1 on
//! the root-only Unix socket. Handlers run as tasks; each turns its
//! request into a [`Job`] that the daemon's main task runs between its
//! other work, so a listing holds the main task one page at a time and a
//! large change one chunk at a time (see `daemon/bulk.rs`), never the
//! whole stream. Changes have a queue of their own, which waits while a
//! large change is applied.

use std::{net::IpAddr, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ironpost_api::{
    AllowAdd, ApiError, BlockAdd, ChangeLine, Changed, ErrorKind, MAX_REQUEST_BYTES, NDJSON,
    Prefixes, SMALL_REQUEST_BYTES, path,
};
use ironpost_policy::{ListName, RuleKey};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::daemon::Daemon;

/// Work for the daemon's main task.
pub type Job = Box<dyn FnOnce(&mut Daemon) + Send>;

/// The main task's queues: reads are taken at any time, changes only when
/// no large change (an import, a sync) is being applied.
pub struct Queues {
    /// Requests that only read.
    pub reads: mpsc::Sender<Job>,
    /// Requests that change the policy.
    pub changes: mpsc::Sender<Job>,
}

/// Block-list entries per page of a listing: the main task is held for
/// one page (its hit counters read from the kernel) at a time.
const PAGE: usize = 4096;

/// What every handler shares.
#[derive(Clone)]
struct Api {
    jobs: mpsc::Sender<Job>,
    changes: mpsc::Sender<Job>,
    /// The configuration file a reload reads (off the main loop).
    config: Option<Arc<std::path::Path>>,
    /// One large request body is read at a time.
    large: Arc<Semaphore>,
}

impl Api {
    /// Runs `f` (which only reads) on the main task and returns its result.
    fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Daemon) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, ApiError>> + Send + 'static {
        queue(self.jobs.clone(), move |d, tx| {
            let _ = tx.send(f(d));
        })
    }

    /// Runs the change `f` on the main task and returns its result.
    fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Daemon) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, ApiError>> + Send + 'static {
        queue(self.changes.clone(), move |d, tx| {
            let _ = tx.send(f(d));
        })
    }

    /// Starts the change `f` on the main task, which answers through the
    /// sender it is given (a large change answers when it is done).
    fn change_replying<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Daemon, oneshot::Sender<T>) + Send + 'static,
    ) -> impl Future<Output = Result<T, ApiError>> + Send + 'static {
        queue(self.changes.clone(), f)
    }
}

async fn queue<T: Send + 'static>(
    queue: mpsc::Sender<Job>,
    f: impl FnOnce(&mut Daemon, oneshot::Sender<T>) + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |d| f(d, tx));
    queue.send(job).await.map_err(|_| stopping())?;
    rx.await.map_err(|_| stopping())
}

fn stopping() -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "the daemon is stopping")
}

/// An [`ApiError`] as an HTTP answer: its kind's status, the error as JSON.
struct Failure(ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

type Answer<T> = Result<Json<T>, Failure>;

/// The router, for the Unix socket.
pub fn router(queues: Queues, config: Option<std::path::PathBuf>) -> Router {
    let api = Api {
        jobs: queues.reads,
        changes: queues.changes,
        config: config.map(Arc::from),
        large: Arc::new(Semaphore::new(1)),
    };
    Router::new()
        .route(
            path::BLOCKS,
            get(list_blocks).post(add_blocks).delete(del_blocks),
        )
        .route(path::BLOCK_SHOW, get(show_block))
        .route(path::BLOCK_SYNC, axum::routing::post(sync_blocks))
        .route(path::BLOCK_FLUSH, axum::routing::post(flush_blocks))
        .route(path::PORT_RULES, get(port_rules))
        .route(
            path::ALLOW,
            get(list_allow).post(add_allow).delete(del_allow),
        )
        .route(
            path::STATS,
            get(|State(api): State<Api>| async move { answer(api.ask(|d| Ok(d.stats())).await) }),
        )
        .route(
            path::STATUS,
            get(|State(api): State<Api>| async move { answer(api.ask(|d| Ok(d.status())).await) }),
        )
        .route(
            path::ACTIVITY,
            get(|State(api): State<Api>| async move { answer(api.ask(|d| d.activity()).await) }),
        )
        .route(
            path::RELOAD,
            axum::routing::post(|State(api): State<Api>| async move {
                // Read and checked here, off the main loop; applied there.
                let t = Instant::now();
                let Some(path) = api.config.clone() else {
                    return Err(Failure(crate::daemon::requests::no_config()));
                };
                let cfg = crate::daemon::requests::read_config_off_loop(path.to_path_buf()).await?;
                let mut c = api.change(move |d| d.reload_with(cfg)).await??;
                c.elapsed_ms = t.elapsed().as_secs_f64() * 1000.0;
                Ok(Json(c))
            }),
        )
        .fallback(|req: Request| async move {
            Failure(ApiError::new(
                ErrorKind::BadRequest,
                format!("no such API request: {} {}", req.method(), req.uri().path()),
            ))
        })
        .with_state(api)
}

fn answer<T: Serialize>(r: Result<Result<T, ApiError>, ApiError>) -> Answer<T> {
    Ok(Json(r.and_then(|r| r)?))
}

/// Runs a change and notes how long it took.
fn timed(f: impl FnOnce() -> Result<Changed, ApiError>) -> Result<Changed, ApiError> {
    let t = Instant::now();
    let mut c = f()?;
    c.elapsed_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(c)
}

/// Reads a JSON body of at most [`MAX_REQUEST_BYTES`]; a body larger than
/// [`SMALL_REQUEST_BYTES`] (or of unknown length) is read while holding
/// the one permit for large bodies. A declared length over the limit is
/// refused unread.
async fn read_json<T: DeserializeOwned>(api: &Api, req: Request) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "request larger than {} MiB: refused unread",
                MAX_REQUEST_BYTES >> 20
            ),
        )
    };
    let declared = declared_length(req.headers());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES) {
        return Err(too_large());
    }
    let _permit = if declared.is_none_or(|n| n > SMALL_REQUEST_BYTES) {
        Some(api.large.acquire().await.map_err(|_| stopping())?)
    } else {
        None
    };
    let bytes = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BYTES)
        .await
        .map_err(|_| too_large())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("bad request body: {e}")))
}

fn declared_length(h: &HeaderMap) -> Option<usize> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// `GET /v1/blocks`: NDJSON, one page of entries asked of the main task at
/// a time, each written before the next is asked for. A failure after the
/// first page ends the stream early (the client sees a truncated body).
#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    list: Option<String>,
}

async fn list_blocks(
    State(api): State<Api>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let list = q
        .list
        .map(|l| ListName::parse(&l))
        .transpose()
        .map_err(|e| ApiError::new(ErrorKind::Invalid, e))?;
    let page = move |d: &mut Daemon, after: Option<RuleKey>| match &list {
        Some(l) => d.list_page(l, after, PAGE),
        None => d.block_page(after, PAGE),
    };
    let page = Arc::new(page);
    let first = {
        let page = page.clone();
        api.ask(move |d| page(d, None)).await??
    };
    let stream = futures_util::stream::unfold((api, Some(first)), move |(api, rows)| {
        let page = page.clone();
        async move {
            let rows = rows?;
            if rows.is_empty() {
                return None;
            }
            let last: Option<RuleKey> = rows.last().map(|r| (r.direction, r.prefix));
            let chunk = ndjson(&rows);
            let next = if rows.len() < PAGE {
                Some(Vec::new())
            } else {
                match api.ask(move |d| page(d, last)).await {
                    Ok(Ok(rows)) => Some(rows),
                    Ok(Err(e)) | Err(e) => {
                        tracing::warn!("listing the block list stopped: {e}");
                        None
                    }
                }
            };
            let chunk = match next {
                Some(_) => Ok(chunk),
                None => Err(std::io::Error::other("listing stopped")),
            };
            Some((chunk, (api, next)))
        }
    });
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response())
}

fn ndjson<T: Serialize>(rows: &[T]) -> Bytes {
    let mut buf = Vec::with_capacity(rows.len() * 256);
    for r in rows {
        if serde_json::to_writer(&mut buf, r).is_ok() {
            buf.push(b'\n');
        }
    }
    Bytes::from(buf)
}

#[derive(Deserialize)]
struct ProgressQuery {
    #[serde(default)]
    progress: bool,
}

/// `POST /v1/blocks`. With `?progress=true`, NDJSON [`ChangeLine`]s:
/// progress, then the result. A client that goes away cancels the change.
async fn add_blocks(
    State(api): State<Api>,
    Query(q): Query<ProgressQuery>,
    req: Request,
) -> Result<Response, Failure> {
    let add: BlockAdd = read_json(&api, req).await?;
    let (ptx, mut prx) = mpsc::channel::<(usize, usize)>(16);
    let progress = Box::new(move |done, total| {
        let _ = ptx.try_send((done, total));
        // Closed when the client has gone: stop, undo.
        !ptx.is_closed()
    });
    let result = api.change_replying(move |d, reply| d.block_add(add, progress, reply));
    if !q.progress {
        tokio::pin!(result);
        let r = loop {
            tokio::select! {
                r = &mut result => break r,
                Some(_) = prx.recv() => {}
            }
        };
        return Ok(Json(r??).into_response());
    }
    let (otx, mut orx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        tokio::pin!(result);
        loop {
            tokio::select! {
                r = &mut result => {
                    let line = match r.and_then(|r| r) {
                        Ok(c) => ChangeLine::Done(c),
                        Err(e) => ChangeLine::Error(e),
                    };
                    let _ = otx.send(ndjson(&[line])).await;
                    break;
                }
                Some((done, total)) = prx.recv() => {
                    if otx.send(ndjson(&[ChangeLine::Progress { done, total }])).await.is_err() {
                        // The client went away: dropping `prx` cancels.
                        break;
                    }
                }
                () = otx.closed() => break,
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        orx.poll_recv(cx).map(|o| o.map(Ok::<_, std::io::Error>))
    });
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response())
}

async fn sync_blocks(State(api): State<Api>, req: Request) -> Answer<Changed> {
    let sync: ironpost_api::BlockSync = read_json(&api, req).await?;
    answer(
        api.change_replying(move |d, reply| d.block_sync(sync, reply))
            .await,
    )
}

async fn flush_blocks(State(api): State<Api>, req: Request) -> Answer<Changed> {
    let flush: ironpost_api::BlockFlush = read_json(&api, req).await?;
    answer(api.change(move |d| timed(|| d.block_flush(flush))).await)
}

async fn del_blocks(State(api): State<Api>, req: Request) -> Answer<Changed> {
    let p: Prefixes = read_json(&api, req).await?;
    answer(
        api.change(move |d| timed(|| d.block_del(p.prefixes, p.list)))
            .await,
    )
}

#[derive(Deserialize)]
struct AddrQuery {
    addr: String,
}

async fn show_block(
    State(api): State<Api>,
    Query(q): Query<AddrQuery>,
) -> Answer<ironpost_api::BlockShow> {
    let addr: IpAddr = q.addr.parse().map_err(|_| {
        ApiError::new(
            ErrorKind::Invalid,
            format!(
                "{:?} is not an IP address (block show takes one address, not a prefix)",
                q.addr
            ),
        )
    })?;
    answer(api.ask(move |d| d.block_show(addr)).await)
}

async fn port_rules(State(api): State<Api>) -> Answer<Vec<ironpost_api::PortRuleRow>> {
    answer(api.ask(|d| d.port_rules()).await)
}

async fn list_allow(State(api): State<Api>) -> Answer<Vec<ironpost_api::AllowRow>> {
    answer(api.ask(|d| d.allow_list()).await)
}

async fn add_allow(State(api): State<Api>, req: Request) -> Answer<Changed> {
    let a: AllowAdd = read_json(&api, req).await?;
    answer(api.change(move |d| timed(|| d.allow_add(a))).await)
}

async fn del_allow(State(api): State<Api>, req: Request) -> Answer<Changed> {
    let p: Prefixes = read_json(&api, req).await?;
    answer(api.change(move |d| timed(|| d.allow_del(p.prefixes))).await)
}

/// The control socket's listener: connections from users other than
/// root (or the daemon's own) are closed at once. The socket is 0600
/// already; this also covers a descriptor passed along.
pub struct RootOnly(pub tokio::net::UnixListener);

impl axum::serve::Listener for RootOnly {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        loop {
            let (stream, addr) = match self.0.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("control socket: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(c) if c.uid() == 0 || c.uid() == me => return (stream, addr),
                Ok(c) => {
                    tracing::warn!("control socket: refused a connection from uid {}", c.uid())
                }
                Err(e) => tracing::warn!("control socket: no peer credentials: {e}"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Serves the API on `listener` until the task is aborted.
pub async fn serve(
    listener: tokio::net::UnixListener,
    queues: Queues,
    config: Option<std::path::PathBuf>,
) {
    if let Err(e) = axum::serve(RootOnly(listener), router(queues, config)).await {
        tracing::error!("control socket: {e}");
    }
}
