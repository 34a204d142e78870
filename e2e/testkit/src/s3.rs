//! An in-process S3 server: `s3s-fs` (objects are plain files) behind s3s's
//! SigV4 check, served by hyper on `127.0.0.1:0`, with a fault-injection layer
//! in front of it whose failures go over the real socket.
//!
//! The server runs on its own thread and tokio runtime, so it keeps answering
//! while a test blocks its own thread (e.g. on `std::process::Command::output`
//! of an agent binary that talks to it) and whatever runtime the test uses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

const BUCKET: &str = "innoxide-test";
const REGION: &str = "us-east-1";
const ACCESS_KEY: &str = "innoxide-test-access";
const SECRET_KEY: &str = "innoxide-test-secret-0123456789";
/// How many requests [`S3Faults::requests`] remembers.
const REQUEST_LOG_LEN: usize = 10_000;

/// A running S3 server with one bucket, `innoxide-test`. Stops on drop.
pub struct S3Server {
    addr: SocketAddr,
    faults: S3Faults,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    root: TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint())
            .field("root_dir", &self.root.path())
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts the server and creates the bucket.
    pub async fn start() -> Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("innoxide-s3-")
            .tempdir()
            .context("creating the S3 server's folder")?;
        // s3s-fs's CreateBucket is exactly a mkdir of the bucket's folder.
        std::fs::create_dir(root.path().join(BUCKET)).context("creating the bucket folder")?;
        let fs = s3s_fs::FileSystem::new(root.path())
            .map_err(|e| anyhow::anyhow!("opening s3s-fs at {}: {e:?}", root.path().display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let faults = S3Faults::default();
        let service = FaultService {
            inner: builder.build(),
            faults: faults.clone(),
        };

        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the S3 server's runtime")?;
        let thread = std::thread::Builder::new()
            .name(format!("s3-server-{}", addr.port()))
            .spawn(move || runtime.block_on(serve(listener, service, shutdown_rx)))
            .context("spawning the S3 server thread")?;
        Ok(Self {
            addr,
            faults,
            shutdown: Some(shutdown),
            thread: Some(thread),
            root,
        })
    }

    /// `http://127.0.0.1:PORT` (path-style requests only).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// Where s3s-fs keeps its files: objects are `ROOT/BUCKET/KEY`, next to
    /// s3s-fs's own hidden metadata files.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// The file that holds object `key` of the bucket (to read or corrupt it).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// The fault-injection handle (a clone; all clones act on this server).
    pub fn faults(&self) -> S3Faults {
        self.faults.clone()
    }

    /// Environment for a child process using `object_store`'s
    /// `AmazonS3Builder::from_env()` (or any AWS SDK) against this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_BUCKET", BUCKET.into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until told to stop; dropping the `JoinSet` then aborts
/// the connections still open.
async fn serve(
    listener: std::net::TcpListener,
    service: FaultService,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("S3 server cannot use its socket: {e}");
            return;
        }
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let socket = match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!("S3 server accept failed: {e}");
                        continue;
                    }
                };
                let service = service.clone();
                connections.spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        }
    }
}

/// Faults to inject into the next requests, and what was injected so far.
/// Cheap to clone; every clone acts on the same server.
#[derive(Clone, Default)]
pub struct S3Faults(Arc<Mutex<FaultState>>);

#[derive(Default)]
struct FaultState {
    slow_down_next: usize,
    rules: Vec<PathRule>,
    cut_upload_parts: usize,
    cut_downloads: usize,
    counts: FaultCounts,
    log: VecDeque<RequestRecord>,
}

struct PathRule {
    pattern: String,
    remaining: Option<usize>,
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// 503 SlowDown answers.
    pub slow_down: usize,
    /// 500 InternalError answers from path rules.
    pub internal_error: usize,
    /// UploadPart requests whose connection was cut mid-body.
    pub cut_uploads: usize,
    /// GetObject responses whose connection was cut mid-body.
    pub cut_downloads: usize,
}

impl FaultCounts {
    pub fn total(&self) -> usize {
        self.slow_down + self.internal_error + self.cut_uploads + self.cut_downloads
    }
}

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query as sent, e.g. `/innoxide-test/key?partNumber=1&uploadId=…`.
    pub path: String,
    /// The fault injected into it, if any.
    pub fault: Option<Fault>,
}

/// A kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    SlowDown,
    InternalError,
    CutUpload,
    CutDownload,
}

impl S3Faults {
    fn state(&self) -> MutexGuard<'_, FaultState> {
        // A panic elsewhere while holding the lock leaves plain counters behind.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` requests (of any kind) get `503 SlowDown`.
    pub fn slow_down_next(&self, n: usize) {
        self.state().slow_down_next += n;
    }

    /// Requests whose path-and-query contains `pattern` get
    /// `500 InternalError`: the next `times` of them, or all with `None`.
    pub fn fail_matching(&self, pattern: impl Into<String>, times: Option<usize>) {
        self.state().rules.push(PathRule {
            pattern: pattern.into(),
            remaining: times,
        });
    }

    /// The next UploadPart request (multipart upload) loses its connection
    /// after the server has read about half of its body. Calls add up.
    pub fn cut_next_upload_part(&self) {
        self.state().cut_upload_parts += 1;
    }

    /// The next GET of an object sends the headers and about half the body,
    /// then loses its connection. Calls add up.
    pub fn cut_next_download(&self) {
        self.state().cut_downloads += 1;
    }

    /// Drops every pending fault (counts and the request log stay).
    pub fn clear(&self) {
        let mut s = self.state();
        s.slow_down_next = 0;
        s.rules.clear();
        s.cut_upload_parts = 0;
        s.cut_downloads = 0;
    }

    /// Faults injected so far, by kind.
    pub fn counts(&self) -> FaultCounts {
        self.state().counts
    }

    /// Faults injected so far, all kinds.
    pub fn injected(&self) -> usize {
        self.counts().total()
    }

    /// The requests seen so far (the last 10,000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().log.iter().cloned().collect()
    }

    /// Records the request and decides its fault, in one step under the lock.
    fn decide<B>(&self, req: &Request<B>) -> Option<Fault> {
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
        let query = req.uri().query().unwrap_or_default();
        let is_upload_part = req.method() == http::Method::PUT
            && query.contains("partNumber=")
            && query.contains("uploadId=");
        let is_object_get = req.method() == http::Method::GET
            && req.uri().path().trim_start_matches('/').contains('/')
            && !query.contains("uploadId=")
            && !query.contains("list-type");

        let mut s = self.state();
        let fault = if s.slow_down_next > 0 {
            s.slow_down_next -= 1;
            Some(Fault::SlowDown)
        } else if let Some(i) = s
            .rules
            .iter()
            .position(|r| path.contains(&r.pattern) && r.remaining != Some(0))
        {
            if let Some(n) = s.rules[i].remaining.as_mut() {
                *n -= 1;
            }
            Some(Fault::InternalError)
        } else if is_upload_part && s.cut_upload_parts > 0 {
            s.cut_upload_parts -= 1;
            Some(Fault::CutUpload)
        } else if is_object_get && s.cut_downloads > 0 {
            s.cut_downloads -= 1;
            Some(Fault::CutDownload)
        } else {
            None
        };
        match fault {
            Some(Fault::SlowDown) => s.counts.slow_down += 1,
            Some(Fault::InternalError) => s.counts.internal_error += 1,
            Some(Fault::CutUpload) => s.counts.cut_uploads += 1,
            Some(Fault::CutDownload) => s.counts.cut_downloads += 1,
            None => {}
        }
        if s.log.len() == REQUEST_LOG_LEN {
            s.log.pop_front();
        }
        s.log.push_back(RequestRecord {
            method: req.method().to_string(),
            path,
            fault,
        });
        fault
    }
}

/// The hyper service in front of s3s: passes requests through, or answers /
/// breaks them as the faults say.
#[derive(Clone)]
struct FaultService {
    inner: S3Service,
    faults: S3Faults,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl hyper::service::Service<Request<Incoming>> for FaultService {
    type Response = Response<s3s::Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(req).await })
    }
}

impl FaultService {
    async fn handle(self, req: Request<Incoming>) -> Result<Response<s3s::Body>, BoxError> {
        match self.faults.decide(&req) {
            None => Ok(self.inner.call(req.map(s3s::Body::from)).await?),
            Some(Fault::SlowDown) => {
                error_response(
                    req,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "Please reduce your request rate.",
                )
                .await
            }
            Some(Fault::InternalError) => {
                error_response(
                    req,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "Injected failure.",
                )
                .await
            }
            Some(Fault::CutUpload) => {
                let half = content_length(req.headers())
                    .map_or(64 << 10, |n| n / 2)
                    .max(1);
                let mut body = req.into_body();
                let mut read = 0u64;
                while read < half {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            read += frame.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        _ => break,
                    }
                }
                // An error from the service makes hyper drop the connection
                // without answering: the client sees a reset mid-upload.
                Err(format!("injected: connection cut after {read} bytes of an upload part").into())
            }
            Some(Fault::CutDownload) => {
                let resp = self.inner.call(req.map(s3s::Body::from)).await?;
                let len = content_length(resp.headers());
                let (parts, body) = resp.into_parts();
                let keep = len.map_or(0, |n| n / 2);
                let body = Truncated {
                    inner: Box::pin(body),
                    remaining: keep,
                };
                Ok(Response::from_parts(
                    parts,
                    s3s::Body::http_body_unsync(body),
                ))
            }
        }
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An S3 error document, sent after reading the whole request body so the
/// client gets the answer rather than a reset while it is still sending.
async fn error_response(
    req: Request<Incoming>,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Result<Response<s3s::Body>, BoxError> {
    let resource = req.uri().path().to_owned();
    req.into_body().collect().await?;
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <Resource>{}</Resource><RequestId>innoxide-injected</RequestId></Error>",
        xml_escape(&resource)
    );
    let resp = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/xml")
        .header(http::header::CONTENT_LENGTH, xml.len())
        .body(s3s::Body::from(xml))?;
    Ok(resp)
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A response body that ends in an error after `remaining` bytes, which makes
/// hyper abort the connection mid-body.
struct Truncated {
    inner: Pin<Box<s3s::Body>>,
    remaining: u64,
}

impl HttpBody for Truncated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(Some(Err("injected: connection cut mid-download".into())));
        }
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    let keep = data.len().min(self.remaining as usize);
                    data.truncate(keep);
                    self.remaining -= keep as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => {
                Poll::Ready(Some(Err("injected: connection cut mid-download".into())))
            }
            other => other,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
