//! `gpu-cnn serve`: the page where a learner draws a digit and watches the network
//! think, and the JSON API behind it. hyper speaks HTTP/1.1, axum routes, and one
//! worker thread (`batcher`) owns the executors; the page's files are compiled in
//! from `assets/web/`, so the binary needs nothing on disk but its weights.
//!
//! What a client can do to the server is bounded: a body over `Config::max_body` is
//! refused (413) before it is read, a request that takes longer than
//! `request_timeout` (a client that stalls mid-body, say) gets 408, a connection
//! that sends no complete header within `header_timeout` is closed, and a full
//! worker queue answers 503 at once. A panic in a handler is a 500, one in an
//! executor a 500 and a fresh executor.

pub mod batcher;
pub mod render;

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics_log::MetricsLog;
use crate::model::Model;
use crate::preprocess;
pub use batcher::{Announced, BatchConfig, Batcher, Executors, Factory, WorkerError};

/// Bodies above this are refused: a phone photo is a few MB, a drawn canvas a few KB.
pub const MAX_BODY_BYTES: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Longest a request may take, reading its body included.
    pub request_timeout: Duration,
    /// Longest a connection may take to send a request's header, or sit idle between
    /// requests.
    pub header_timeout: Duration,
    /// How long open requests may finish after a stop signal.
    pub shutdown_grace: Duration,
    /// A training run whose metrics.jsonl `/run` draws.
    pub run_dir: Option<PathBuf>,
    /// The model served, for the explanation's layer names.
    pub model: Model,
    /// `/api/model`'s answer.
    pub model_info: Value,
}

impl Config {
    pub fn new(model: Model, model_info: Value) -> Config {
        Config {
            max_body: MAX_BODY_BYTES,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            run_dir: None,
            model,
            model_info,
        }
    }
}

struct AppState {
    batcher: Batcher,
    config: Config,
    /// Turns to prepare a picture (see `PREPARING_AT_ONCE`).
    preparing: Arc<tokio::sync::Semaphore>,
}

/// Pictures prepared at once, at most. A picture of 64 megapixels, the most a request
/// may hold, fits in a 90 KB PNG and takes ~0.5 GB to decode and prepare: 8 sent at
/// once took the server to 4 GB, so a few dozen would have exhausted the machine. The
/// work is CPU-bound, so more turns than cores gain nothing; past 4, memory is what
/// grows.
fn preparing_at_once() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// An error answer: a status and a message, as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            eprintln!("serve: {} {}", self.0, self.1);
        }
        let mut r = (self.0, axum::Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Busy => ApiError(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; try again".into()),
            WorkerError::Stopped => ApiError(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping".into()),
            WorkerError::Failed(m) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

type ApiResult = std::result::Result<Response, ApiError>;

/// The page's files, compiled in: nothing is read from disk, so no path can reach
/// outside them.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../assets/web/index.html")),
    ("run.html", "text/html; charset=utf-8", include_str!("../../assets/web/run.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../assets/web/app.js")),
    ("run.js", "text/javascript; charset=utf-8", include_str!("../../assets/web/run.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../assets/web/style.css")),
];

/// The routes and the limits around them.
pub fn router(batcher: Batcher, config: Config) -> Router {
    let timeout = config.request_timeout;
    let preparing = Arc::new(tokio::sync::Semaphore::new(preparing_at_once()));
    let state = Arc::new(AppState { batcher, config, preparing });
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route("/run", get(|| async { file("run.html") }))
        .route(
            "/static/{name}",
            get(|axum::extract::Path(name): axum::extract::Path<String>| async move { file(&name) }),
        )
        .route("/api/predict", axum::routing::post(predict))
        .route(
            "/api/model",
            get(|State(s): State<Arc<AppState>>| async move { axum::Json(s.config.model_info.clone()) }),
        )
        .route("/api/run", get(run_metrics))
        .route("/healthz", get(health))
        .fallback(|uri: Uri| async move { ApiError(StatusCode::NOT_FOUND, format!("no such page: {}", uri.path())) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
        })
        .with_state(state)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the handler panicked".into()).into_response()
        }))
}

fn file(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, text)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "no-cache"),
                // The page loads nothing from elsewhere, and this keeps it so.
                (header::CONTENT_SECURITY_POLICY, "default-src 'self'; img-src 'self' data: blob:"),
            ],
            *text,
        )
            .into_response(),
        None => ApiError(StatusCode::NOT_FOUND, format!("no such file: {name}")).into_response(),
    }
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    let c = &s.batcher.counters;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    axum::Json(json!({
        "status": "ok",
        "backend": s.batcher.describe,
        "predictions": n(&c.predictions),
        "batches": n(&c.batches),
        "largest_batch": n(&c.largest_batch),
        "explanations": n(&c.explanations),
        "rebuilds": n(&c.rebuilds),
    }))
    .into_response()
}

/// `POST /api/predict[?explain=1]`: a picture (PNG, JPEG, …) prepared as `infer`
/// prepares one, or `{"pixels": [...]}` already prepared.
async fn predict(State(s): State<Arc<AppState>>, req: Request) -> ApiResult {
    let explain = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| matches!(kv, "explain" | "explain=1" | "explain=true")));
    // A plain prediction may share a batch: tell the worker it is coming.
    let announced = (!explain).then(|| s.batcher.announce());
    let headers = req.headers().clone();
    let body = read_body(req.into_body(), &headers, s.config.max_body).await?;
    let (input, from_picture) = if is_json(&headers) {
        (pixels_from_json(&body, s.batcher.input_len)?, false)
    } else {
        if let Some(ct) = content_type(&headers).filter(|ct| ct.starts_with("multipart/")) {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("{ct} is not read: send the picture itself as the body (curl --data-binary @digit.png)"),
            ));
        }
        // Decoding and preparing a picture is CPU work: off the threads that serve
        // connections, and a few at a time. The turn goes with the work, so a request
        // that times out still holds it until its picture is done.
        let turn =
            s.preparing.clone().acquire_owned().await.map_err(|e| {
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("no turn to prepare the picture: {e}"))
            })?;
        let digit = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            preprocess::load_digit_bytes(Path::new("the picture"), &body)
        })
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("preparing the picture failed: {e}")))?
        .map_err(|e| ApiError::bad(format!("{e:#}")))?;
        (digit.to_vec(), true)
    };
    let mut answer = if explain {
        let ex = s.batcher.explain(input.clone()).await?;
        let mut v = render::explanation_json(&s.config.model, &input, &ex).map_err(|e| {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the explanation does not fit the model: {e}"))
        })?;
        v["digit"] = ex.prediction.into();
        v["probabilities"] = ex.probs.clone().into();
        v["top3"] = top3(&ex.probs);
        v
    } else {
        let probs = s.batcher.predict(input, announced).await?;
        json!({"digit": argmax(&probs), "probabilities": probs, "top3": top3(&probs)})
    };
    answer["prepared"] = from_picture.into();
    answer["backend"] = s.batcher.describe.clone().into();
    Ok(axum::Json(answer).into_response())
}

/// The body, refused by its Content-Length before any of it is read when that is over
/// `max`, or as soon as it grows past `max` when it comes in chunks.
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> std::result::Result<Bytes, ApiError> {
    let too_large =
        |n: String| ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is {n} bytes; the limit is {max} bytes"));
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if len > max as u64 {
            return Err(too_large(len.to_string()));
        }
    }
    let bytes = axum::body::to_bytes(body, max).await.map_err(|e| {
        let is_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.downcast_ref::<http_body_util::LengthLimitError>().is_some());
        if is_limit {
            too_large(format!("over {max}"))
        } else {
            ApiError::bad(format!("the body could not be read: {e}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad(
            "the request has no body: send a PNG or JPEG picture, or JSON {\"pixels\": [784 numbers in 0..1]}",
        ));
    }
    Ok(bytes)
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_ascii_lowercase())
}

fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence == "application/json" || essence.ends_with("+json")
    })
}

/// `{"pixels": [n numbers]}` or a bare array of n numbers, each finite.
fn pixels_from_json(body: &[u8], n: usize) -> std::result::Result<Vec<f32>, ApiError> {
    let want = format!("expected {{\"pixels\": [{n} numbers]}} (a prepared input, row by row, ink high)");
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))?;
    let list = match &v {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("pixels") {
            Some(Value::Array(a)) => a,
            Some(other) => return Err(ApiError::bad(format!("'pixels' is {}; {want}", kind(other)))),
            None => return Err(ApiError::bad(format!("no 'pixels' key; {want}"))),
        },
        other => return Err(ApiError::bad(format!("the JSON is {}; {want}", kind(other)))),
    };
    if list.len() != n {
        return Err(ApiError::bad(format!("{} pixels; {want}", list.len())));
    }
    list.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| ApiError::bad(format!("pixel {i} is {}, not a finite number", kind(x))))
        })
        .collect()
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(_) => "a string".into(),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// The first class of largest probability, as the executors break ties.
fn argmax(probs: &[f32]) -> usize {
    probs.iter().enumerate().fold(0, |best, (i, &p)| if p > probs[best] { i } else { best })
}

fn top3(probs: &[f32]) -> Value {
    let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
    ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
    ranked.iter().take(3).map(|&(d, p)| json!({"digit": d, "probability": p})).collect()
}

/// `GET /api/run`: the run's curves as `metrics_log` reads them, for `/run` to draw.
async fn run_metrics(State(s): State<Arc<AppState>>) -> ApiResult {
    let Some(dir) = s.config.run_dir.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "no training run: start serve with --run DIR".into()));
    };
    let answer = tokio::task::spawn_blocking(move || run_json(&dir))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the run failed: {e}")))??;
    Ok(axum::Json(answer).into_response())
}

fn run_json(dir: &Path) -> std::result::Result<Value, ApiError> {
    let path = dir.join("metrics.jsonl");
    let mut v = json!({"dir": dir.display().to_string(), "file": path.display().to_string()});
    // A run that has not logged its first point yet is not an error: the page waits.
    if !path.exists() {
        v["exists"] = false.into();
        v["train"] = json!([]);
        v["test"] = json!([]);
        v["warnings"] = json!([]);
        return Ok(v);
    }
    let log = MetricsLog::read(&path).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let (train, test) = log.curves();
    v["exists"] = true.into();
    v["train"] = train.iter().map(|&(s, l, a)| json!([s, l, a])).collect();
    v["test"] = test.iter().map(|&(s, l, a)| json!([s, l, a])).collect();
    v["warnings"] = log.warnings.iter().take(20).cloned().collect();
    Ok(v)
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM.
pub async fn stop_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("serve: cannot listen for Ctrl-C ({e}); stop it with SIGTERM");
            std::future::pending::<()>().await
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                eprintln!("serve: cannot listen for SIGTERM ({e}); stop it with Ctrl-C");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

/// Serve on `listener` until `stop` resolves, then let open requests finish for
/// `shutdown_grace` and stop the worker. Blocks; runs its own tokio runtime.
pub fn run(
    listener: std::net::TcpListener,
    batcher: Batcher,
    config: Config,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (header_timeout, grace) = (config.header_timeout, config.shutdown_grace);
    let app = router(batcher, config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gpu-cnn serve")
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(async move {
        listener.set_nonblocking(true).context("cannot make the listener non-blocking")?;
        let listener = tokio::net::TcpListener::from_std(listener).context("cannot listen")?;
        accept_loop(listener, app, header_timeout, grace, stop).await;
        Ok::<(), anyhow::Error>(())
    })?;
    // The router, and with it the batcher, was dropped when the loop ended: the
    // worker thread has answered its queue and ended.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    grace: Duration,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // half_close: a client may shut its side after sending a request and still read the answer.
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout).half_close(true);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        // A client that hangs up or times out ends its connection; nothing to report.
                        let _ = conn.await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close instead of spinning.
                    eprintln!("serve: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = &mut stop => break,
        }
    }
    drop(listener);
    drop(app);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => eprintln!("serve: requests still open after {grace:?}; closing them"),
    }
}
