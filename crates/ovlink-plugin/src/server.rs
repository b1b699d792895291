//! The plugin server: the listening socket, one HTTP/1.1 connection task per client (hyper on
//! tokio), one handler per protocol method, and the process lifecycle.
//!
//! - Every driver call runs on tokio's blocking pool; the async threads only move bytes.
//! - Calls on one layer (Get, Put, Remove, Create*, ApplyDiff, Diff, Changes, DiffSize) wait
//!   for each other in a per-layer async queue ([`Gates`]) *before* they take a blocking
//!   thread: a stalled ApplyDiff and hundreds of Gets waiting behind it hold one thread, not
//!   hundreds, and calls on other layers (and Status, Exists, GetMetadata) never wait for them.
//! - Waiting is bounded: a request head (and the idle time between requests on a kept-alive
//!   connection) within [`ServerOptions::header_timeout`], a JSON body within the same time,
//!   a layer tar streamed in (ApplyDiff) or out (Diff) with no byte moving for
//!   [`ServerOptions::body_idle_timeout`] fails. At most [`ServerOptions::max_connections`]
//!   connections are served at once; more wait in the listen backlog (logged once), so
//!   `accept` never runs into the fd limit.
//! - The server holds one driver (made by `/GraphDriver.Init` through the [`DriverFactory`]); its
//!   reference counts of mounts live as long as the server does. A second Init replaces it
//!   (dockerd restarted).
//! - Init never unmounts: with `--live-restore` containers keep running across a dockerd
//!   restart, and their mounts must stay. Each mount found at `merged/` counts as one
//!   reference the first time the driver touches that layer (the mount table is the truth,
//!   as in Docker's built-in driver); dockerd's Put of a container it did not keep releases it.
//! - Every ApplyDiff is journaled while it runs (`<home>/.ovlink-apply.<id>`, flocked): a layer
//!   whose ApplyDiff was interrupted (the plugin killed during `docker load`) is removed at the
//!   next start or Init (dockerd only ever removes such a layer, and its own Remove failed while
//!   the plugin was down), unless the apply had already published its tree (then it is kept:
//!   see [`crate::journal`]).
//! - On SIGTERM/SIGINT: stop accepting, let in-flight requests finish (bounded by
//!   [`ServerOptions::shutdown_timeout`]), remove the socket, and exit **leaving every mount in
//!   place** (a restart for an upgrade must not pull the root filesystem from under running
//!   containers). Only `/GraphDriver.Cleanup` (dockerd's own shutdown) unmounts.
//! - A successful Init is recorded ([`ServerOptions::init_record`], `<socket>.init.json` by
//!   default, on `/run` so a reboot forgets it). A server restarted while dockerd runs (dockerd
//!   never repeats Init) re-initializes from it at start: the containers' mounts stay, and the
//!   driver counts each as one reference from the mount table.
//!
//! A failing call never stops the server: it answers `{"Err": "..."}` with status 500 and the
//! whole cause chain. This module never touches the home itself, except its own ApplyDiff
//! journal files (`.ovlink-apply.*`, see [`crate::journal`]).

use crate::error::PluginError;
use crate::gate::Gates;
use crate::journal;
use crate::protocol::{
    self, non_empty, Activate, Capabilities, InitRequest, LayerRequest, Response, WireChange,
    JSON_CONTENT_TYPE,
};
use crate::stream::{self, BodyReader, ChannelBody, ChannelWriter, Chunk};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use ovlink_driver::error_chain;
use ovlink_driver::{CreateOpts, Driver, DriverError, InitConfig};
use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Makes the driver at `/GraphDriver.Init` from dockerd's home, options and id maps (the
/// binary chooses overlay or overlay2 and sets what dockerd does not send: the sync, reclaim
/// and diff modes of its flags).
pub type DriverFactory =
    Arc<dyn Fn(&InitConfig) -> Result<Box<dyn Driver>, DriverError> + Send + Sync>;

/// The body of every answer.
pub type RespBody = BoxBody<Bytes, std::io::Error>;

/// Largest JSON request accepted (they are tiny; layer tars never come as JSON).
const MAX_JSON: usize = 1 << 20;

/// `/run/docker/plugins/NAME.sock`, where dockerd looks for a v1 plugin named NAME.
pub fn default_socket(name: &str) -> PathBuf {
    PathBuf::from("/run/docker/plugins").join(format!("{name}.sock"))
}

/// Binds the unix socket at `path` (mode 0600, its directory created 0755). A leftover
/// socket nobody answers on is replaced; a live one is refused, as is a non-socket file.
pub fn bind_socket(path: &Path) -> Result<std::os::unix::net::UnixListener, PluginError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|source| PluginError::SocketDir {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(PluginError::AlreadyServing {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(|source| PluginError::StaleSocket {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(PluginError::StaleSocket {
                path: path.to_path_buf(),
                source: std::io::Error::other("it exists and is not a socket"),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(PluginError::StaleSocket {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let sock_err = |op: &'static str| {
        move |source| PluginError::Socket {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let l = std::os::unix::net::UnixListener::bind(path).map_err(sock_err("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(sock_err("change mode of"))?;
    l.set_nonblocking(true)
        .map_err(sock_err("make non-blocking"))?;
    Ok(l)
}

/// The graphdriver plugin server. See the module docs.
pub struct Server {
    factory: DriverFactory,
    driver: RwLock<Option<Arc<dyn Driver>>>,
    gates: Arc<Gates>,
    opts: ServerOptions,
}

/// How a [`Server`] behaves beyond the protocol.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long shutdown waits for in-flight requests before exiting anyway.
    pub shutdown_timeout: Duration,
    /// Where a successful Init is recorded and re-read at start (`None`: not recorded).
    pub init_record: Option<PathBuf>,
    /// The longest a client may take to send a request head, and the longest a kept-alive
    /// connection may stay idle between requests; also the bound for a JSON body.
    pub header_timeout: Duration,
    /// A layer tar streamed in (ApplyDiff's body) or out (Diff's answer) fails when no byte
    /// moves for this long. Only the time spent waiting for the client counts, not the
    /// driver's own work; dockerd streams at disk speed, so minutes of silence mean a dead
    /// client.
    pub body_idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            shutdown_timeout: Duration::from_secs(60),
            init_record: None,
            header_timeout: Duration::from_secs(120),
            body_idle_timeout: Duration::from_secs(600),
            max_connections: 1000,
        }
    }
}

/// The default Init record of a socket: `NAME.sock` -> `NAME.init.json` beside it.
pub fn default_init_record(socket: &Path) -> PathBuf {
    socket.with_extension("init.json")
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("home", &self.driver().map(|d| d.home().to_path_buf()))
            .finish()
    }
}

/// A call's failure: the message for `{"Err": ...}` and the status.
struct CallError(StatusCode, String);

impl From<String> for CallError {
    fn from(s: String) -> Self {
        CallError(StatusCode::INTERNAL_SERVER_ERROR, s)
    }
}

impl From<DriverError> for CallError {
    fn from(e: DriverError) -> Self {
        CallError(StatusCode::INTERNAL_SERVER_ERROR, error_chain(&e))
    }
}

type CallResult = Result<Response, CallError>;

impl Server {
    /// A server that makes its driver with `factory` at Init.
    pub fn new(factory: DriverFactory) -> Arc<Self> {
        Self::with_options(factory, ServerOptions::default())
    }

    /// A server with explicit [`ServerOptions`].
    pub fn with_options(factory: DriverFactory, opts: ServerOptions) -> Arc<Self> {
        Arc::new(Server {
            factory,
            driver: RwLock::new(None),
            gates: Gates::new(),
            opts,
        })
    }

    /// Re-initializes from the Init record, if there is one (a restart while dockerd runs).
    /// Mounts in use by running containers stay; layers of interrupted ApplyDiffs are removed.
    /// Failures are logged only.
    pub fn restore_init(&self) {
        let Some(rec) = &self.opts.init_record else {
            return;
        };
        let Ok(bytes) = std::fs::read(rec) else {
            return;
        };
        let made = protocol::parse::<InitRequest>(&bytes)
            .and_then(|req| init_config(&req))
            .and_then(|cfg| (self.factory)(&cfg).map_err(|e| error_chain(&e)));
        match made {
            Ok(d) => {
                log(format_args!(
                    "re-initialized the {} driver in {} from {} (dockerd's last Init)",
                    d.name(),
                    d.home().display(),
                    rec.display()
                ));
                remove_interrupted(d.as_ref());
                *self.driver.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(d));
            }
            Err(e) => log(format_args!(
                "cannot re-initialize from {}: {e}; waiting for /GraphDriver.Init",
                rec.display()
            )),
        }
    }

    fn record_init(&self, body: &[u8]) {
        let Some(rec) = &self.opts.init_record else {
            return;
        };
        let tmp = rec.with_extension("init.json.tmp");
        let written = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(body)?;
            std::fs::rename(&tmp, rec)
        })();
        if let Err(e) = written {
            log(format_args!(
                "cannot record Init in {}: {e} (a restarted plugin will wait for Init)",
                rec.display()
            ));
        }
    }

    /// The driver, once Init made it.
    pub fn driver(&self) -> Option<Arc<dyn Driver>> {
        self.driver
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn need_driver(&self) -> Result<Arc<dyn Driver>, CallError> {
        self.driver().ok_or_else(|| {
            CallError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ovlink plugin is not initialized: /GraphDriver.Init must come first".to_string(),
            )
        })
    }

    /// Binds `socket`, serves until SIGTERM or SIGINT, then shuts down gracefully: in-flight
    /// requests finish, the socket is removed. Mounts stay (see the module docs).
    pub fn run(self: Arc<Self>, socket: &Path) -> Result<(), PluginError> {
        let std_listener = bind_socket(socket)?;
        self.restore_init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // One blocking thread per connection at most, plus room for Diff writers.
            .max_blocking_threads(self.opts.max_connections.saturating_mul(2).max(16))
            .build()
            .map_err(|source| PluginError::Setup {
                what: "the async runtime",
                source,
            })?;
        let srv = self.clone();
        let served = rt.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(std_listener).map_err(|source| {
                PluginError::Socket {
                    op: "listen on",
                    path: socket.to_path_buf(),
                    source,
                }
            })?;
            let setup = |what: &'static str| move |source| PluginError::Setup { what, source };
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).map_err(setup("the SIGTERM handler"))?;
            let mut int = signal(SignalKind::interrupt()).map_err(setup("the SIGINT handler"))?;
            let shutdown = async move {
                let sig = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                log(format_args!(
                    "{sig}: finishing in-flight requests, then exiting (mounts stay for running \
                     containers; only /GraphDriver.Cleanup unmounts)"
                ));
            };
            srv.serve(listener, shutdown).await;
            Ok::<(), PluginError>(())
        });
        let _ = std::fs::remove_file(socket);
        rt.shutdown_timeout(Duration::from_secs(5));
        if let Some(d) = self.driver() {
            let left = d
                .layers()
                .map(|v| v.iter().filter(|l| l.mounted).count())
                .unwrap_or(0);
            log(format_args!(
                "stopped; {left} container layer(s) under {} left mounted",
                d.home().display()
            ));
        }
        served
    }

    /// Serves connections from `listener` until `shutdown` completes, then waits (bounded) for
    /// the requests in flight.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::UnixListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(self.opts.max_connections));
        let mut accept_errors = ovlink_fs::fdlimit::RateLimited::default();
        let mut at_limit = ovlink_fs::fdlimit::RateLimited::default();
        tokio::pin!(shutdown);
        loop {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if let Some(n) = at_limit.tick() {
                        log(format_args!(
                            "{} connections open, the limit (--max-connections): new \
                             connections wait until one closes (idle ones close after {:?}); \
                             reached {n} time(s) in the last minute",
                            self.opts.max_connections, self.opts.header_timeout
                        ));
                    }
                    tokio::select! {
                        p = slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                        _ = &mut shutdown => break,
                    }
                }
            };
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, _)) => {
                        let srv = self.clone();
                        let svc = hyper::service::service_fn(move |req| srv.clone().handle(req));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(self.opts.header_timeout)
                            .serve_connection(TokioIo::new(stream), svc);
                        let fut = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = fut.await {
                                if !is_timeout_close(&e) {
                                    log(format_args!("connection: {}", error_chain(&e)));
                                }
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        drop(permit);
                        if let Some(n) = accept_errors.tick() {
                            let hint = if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) {
                                " (the process is out of file descriptors: raise LimitNOFILE, \
                                 or lower --max-connections)"
                            } else {
                                ""
                            };
                            log(format_args!("accept: {e}{hint}; {n} such error(s) in the last minute"));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(self.opts.shutdown_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            log(format_args!(
                "requests still running after {:?}; stopping anyway",
                self.opts.shutdown_timeout
            ));
        }
    }

    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<hyper::Response<RespBody>, Infallible> {
        let path = req.uri().path().trim_start_matches('/').to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let resp = match path.as_str() {
            "Plugin.Activate" => {
                let _ = read_json_body(req.into_body(), self.opts.header_timeout).await;
                json(
                    StatusCode::OK,
                    &Activate {
                        implements: vec!["GraphDriver".to_string()],
                    },
                )
            }
            "GraphDriver.ApplyDiff" => self.apply_diff(&query, req.into_body()).await,
            "GraphDriver.Diff" => self.diff(req.into_body()).await,
            m => match m.strip_prefix("GraphDriver.") {
                Some(method) => {
                    let method = method.to_string();
                    let r = self.json_call(&method, req.into_body()).await;
                    answer(&method, r)
                }
                None => answer(
                    &path,
                    Err(CallError(
                        StatusCode::NOT_FOUND,
                        format!("unknown method /{path}"),
                    )),
                ),
            },
        };
        Ok(resp)
    }

    async fn json_call(self: &Arc<Self>, method: &str, body: Incoming) -> CallResult {
        let bytes = read_json_body(body, self.opts.header_timeout).await?;
        if method == "Init" {
            return self.init(&bytes).await;
        }
        if method == "Capabilities" {
            return Ok(Response {
                capabilities: Some(Capabilities::default()),
                ..Default::default()
            });
        }
        let req: LayerRequest = protocol::parse(&bytes)?;
        if method == "Exists" {
            // Any error counts as false.
            let Some(d) = self.driver() else {
                return Ok(Response::default());
            };
            let id = req.id().to_string();
            let exists = blocking(move || Ok(d.exists(&id))).await.unwrap_or(false);
            return Ok(Response {
                exists,
                ..Default::default()
            });
        }
        let d = self.need_driver()?;
        // Calls that lock the layer wait in its queue first, without a thread.
        let gate = match method {
            "Create" | "CreateReadWrite" | "Remove" | "Get" | "Put" | "Changes" | "DiffSize" => {
                Some(self.gates.enter(req.id()).await)
            }
            _ => None,
        };
        let method = method.to_string();
        blocking(move || {
            let r = call_driver(d.as_ref(), &method, &req);
            drop(gate);
            r
        })
        .await
    }

    async fn init(self: &Arc<Self>, body: &[u8]) -> CallResult {
        let req: InitRequest = protocol::parse(body)?;
        let cfg = init_config(&req)?;
        let factory = self.factory.clone();
        let d = blocking(move || {
            // No cleanup: mounts of running containers stay (--live-restore); the driver
            // counts each as one reference from the mount table.
            let d = factory(&cfg)?;
            remove_interrupted(d.as_ref());
            Ok(d)
        })
        .await?;
        log(format_args!(
            "Init: {} driver in {}",
            d.name(),
            d.home().display()
        ));
        *self.driver.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(d));
        self.record_init(body);
        Ok(Response::default())
    }

    async fn apply_diff(
        self: &Arc<Self>,
        query: &str,
        body: Incoming,
    ) -> hyper::Response<RespBody> {
        let (tx, rx) = mpsc::channel(stream::CHANNEL_DEPTH);
        let pump = tokio::spawn(stream::pump_body(body, tx, self.opts.body_idle_timeout));
        let id = query_param(query, "id").unwrap_or_default();
        let parent = query_param(query, "parent").filter(|p| !p.is_empty());
        let r: CallResult = match self.need_driver() {
            Ok(d) => {
                let gate = self.gates.enter(&id).await;
                let id = id.clone();
                blocking(move || {
                    ovlink_driver::validate_id(&id)?;
                    let mark = journal::begin(d.home(), &id)
                        .map_err(|e| format!("ApplyDiff {id}: cannot journal the apply: {e}"))?;
                    let mut reader = BodyReader::new(rx);
                    let size = d.apply_diff(&id, parent.as_deref(), &mut reader);
                    drop(mark);
                    drop(gate);
                    Ok(Response {
                        size: size?,
                        ..Default::default()
                    })
                })
                .await
            }
            Err(e) => {
                drop(rx);
                Err(e)
            }
        };
        // Read (and drop) what the applier did not: the connection stays in sync.
        let _ = pump.await;
        answer(&format!("ApplyDiff {id}"), r)
    }

    async fn diff(self: &Arc<Self>, body: Incoming) -> hyper::Response<RespBody> {
        let start = async {
            let bytes = read_json_body(body, self.opts.header_timeout).await?;
            let req: LayerRequest = protocol::parse(&bytes)?;
            let d = self.need_driver()?;
            Ok::<_, CallError>((d, req))
        };
        let (d, req) = match start.await {
            Ok(x) => x,
            Err(e) => return answer("Diff", Err(e)),
        };
        let id = req.id().to_string();
        let gate = self.gates.enter(&id).await;
        let (tx, mut rx) = mpsc::channel(stream::CHANNEL_DEPTH);
        let idle = (
            tokio::runtime::Handle::current(),
            self.opts.body_idle_timeout,
        );
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter::new(tx).idle_timeout(idle.0, idle.1);
            let r = d
                .diff(req.id(), req.parent(), &mut w)
                .map_err(|e| error_chain(&e))
                .and_then(|()| w.flush().map_err(|e| e.to_string()));
            drop(gate);
            match r {
                Ok(()) => {
                    let _ = w.finish();
                }
                Err(m) => {
                    log(format_args!("Diff {}: {m}", req.id()));
                    w.fail(m);
                }
            }
        });
        match rx.recv().await {
            Some(Chunk::Failed(m)) => answer(&format!("Diff {id}"), Err(m.into())),
            Some(Chunk::Data(first)) => tar_response(ChannelBody::new(Some(first), rx)),
            None => tar_response(ChannelBody::new(None, rx)),
        }
    }
}

/// Removes the layers whose ApplyDiff never answered (see [`crate::journal`]), except those
/// whose apply had finished; logged only.
fn remove_interrupted(d: &dyn Driver) {
    let found = match journal::interrupted(d.home()) {
        Ok(v) => v,
        Err(e) => {
            log(format_args!("cannot read the ApplyDiff journal: {e}"));
            return;
        }
    };
    for j in found {
        if j.completed {
            // The apply had published its tree: dockerd may have registered the layer (the
            // unlink of the journal after success is not synced; see crate::journal).
            log(format_args!(
                "kept layer {} whose ApplyDiff had finished (its journal file was left)",
                j.id
            ));
            j.done();
            continue;
        }
        match d.remove(&j.id) {
            Ok(()) | Err(DriverError::LayerNotFound { .. }) => {
                log(format_args!(
                    "removed layer {} whose ApplyDiff was interrupted (dockerd discards it)",
                    j.id
                ));
                j.done();
            }
            Err(e) => log(format_args!(
                "cannot remove layer {} whose ApplyDiff was interrupted: {} (kept {} to retry)",
                j.id,
                error_chain(&e),
                j.path().display()
            )),
        }
    }
}

/// A connection closed by the header/idle timeout is routine, not worth a log line each.
fn is_timeout_close(e: &hyper::Error) -> bool {
    e.is_timeout() || e.is_incomplete_message()
}

/// The driver's [`InitConfig`] from an Init request (Home required and absolute).
fn init_config(req: &InitRequest) -> Result<InitConfig, String> {
    let home =
        non_empty(req.home.as_deref()).ok_or_else(|| "Init: Home is required".to_string())?;
    if !Path::new(home).is_absolute() {
        return Err(format!("Init: Home {home:?} is not an absolute path"));
    }
    Ok(InitConfig {
        home: PathBuf::from(home),
        options: req.opts.clone().unwrap_or_default(),
        uid_maps: req.uid_maps.clone().unwrap_or_default(),
        gid_maps: req.gid_maps.clone().unwrap_or_default(),
        // The settings dockerd does not send (sync, reclaim, diff) are the factory's: the
        // binary's flags.
        ..Default::default()
    })
}

/// One JSON call on the driver (everything but Init, Capabilities, Exists, ApplyDiff, Diff).
fn call_driver(d: &dyn Driver, method: &str, req: &LayerRequest) -> CallResult {
    let opts = || CreateOpts {
        mount_label: req.mount_label().map(str::to_string),
        storage_opt: req.storage_opt.clone().unwrap_or_default(),
    };
    let mut r = Response::default();
    match method {
        "Create" => d.create(req.id(), req.parent(), &opts())?,
        "CreateReadWrite" => d.create_read_write(req.id(), req.parent(), &opts())?,
        "Remove" => d.remove(req.id())?,
        "Get" => {
            r.dir = Some(
                d.get(req.id(), req.mount_label())?
                    .to_string_lossy()
                    .into_owned(),
            )
        }
        "Put" => d.put(req.id())?,
        "Status" => {
            r.status = Some(d.status().into_iter().map(|(k, v)| [k, v]).collect());
        }
        "GetMetadata" => r.metadata = Some(d.metadata(req.id())?),
        "Cleanup" => d.cleanup()?,
        "Changes" => {
            r.changes = Some(
                d.changes(req.id(), req.parent())?
                    .iter()
                    .map(WireChange::from)
                    .collect(),
            )
        }
        "DiffSize" => r.size = d.diff_size(req.id(), req.parent())?,
        other => {
            return Err(CallError(
                StatusCode::NOT_FOUND,
                format!("unknown method /GraphDriver.{other}"),
            ))
        }
    }
    Ok(r)
}

/// Runs `f` on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, CallError>
where
    F: FnOnce() -> Result<T, CallError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CallError::from(format!("the driver call failed: {e}")))?
}

async fn read_json_body(body: Incoming, limit: Duration) -> Result<Bytes, CallError> {
    match tokio::time::timeout(limit, Limited::new(body, MAX_JSON).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) => Err(CallError(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(CallError(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {limit:?}"),
        )),
    }
}

fn answer(what: &str, r: CallResult) -> hyper::Response<RespBody> {
    match r {
        Ok(resp) => json(StatusCode::OK, &resp),
        Err(CallError(status, msg)) => {
            log(format_args!("{what}: {msg}"));
            json(status, &Response::error(msg))
        }
    }
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> hyper::Response<RespBody> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = hyper::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

fn tar_response(body: ChannelBody) -> hyper::Response<RespBody> {
    let mut resp = hyper::Response::new(body.boxed());
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-tar"),
    );
    resp
}

/// The value of `key` in a URL query (`id=…&parent=…`), percent-decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// A query component decoded as Go's `url.ParseQuery` does: `+` is a space, `%XX` a byte
/// (a malformed escape is kept as it is), invalid UTF-8 replaced.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// One line on stderr (journald keeps it under the unit).
fn log(args: std::fmt::Arguments<'_>) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "ovlink plugin: {args}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("id=abc&parent=def", "id").as_deref(),
            Some("abc")
        );
        assert_eq!(query_param("id=abc&parent=", "parent").as_deref(), Some(""));
        assert_eq!(query_param("id=a%2Db", "id").as_deref(), Some("a-b"));
        assert_eq!(query_param("id=a%", "id").as_deref(), Some("a%"));
        assert_eq!(query_param("id=a+b%2Bc", "id").as_deref(), Some("a b+c"));
        assert_eq!(query_param("i%64=x", "id").as_deref(), Some("x"));
        assert_eq!(query_param("x=1", "id"), None);
    }
}
