//! `gpu-cnn serve` over real HTTP: the pages and the API, bad input, slow clients,
//! a panicking executor, stop signals, load with dynamic batching, and a bounded
//! fuzz of bodies and headers. Every server listens on 127.0.0.1 only.
//!
//! The load test's size comes from GPU_CNN_SERVE_REQUESTS (default 400: CI's
//! shortened run); `docs/serve.md` gives the full command, `docs/performance.md`
//! its figures.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gpu_cnn::checkpoint;
use gpu_cnn::cpu::CpuInference;
use gpu_cnn::executor::{BatchEval, Explain, Explanation, Inference};
use gpu_cnn::model::Model;
use gpu_cnn::rng::Rng;
use gpu_cnn::serve::{self, BatchConfig, Batcher, Config, Factory};

/// The servers share two cores with the load they get: one test at a time, so the
/// load figures and the timeouts are measured on a machine doing nothing else.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Servers: the real binary, or the library's server in this process with any
// executor (to make one panic) and short timeouts.

/// `gpu-cnn serve` on a free port of 127.0.0.1, killed when dropped.
struct Binary {
    child: Child,
    addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
}

impl Binary {
    fn start(extra: &[&str]) -> Binary {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-cnn"))
            .args(["serve", "--addr", "127.0.0.1:0", "--backend", common::backend()])
            .args(extra)
            .env("NODEVICE_SELECT", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("listening on http://") {
                        let addr = rest.split('/').next().unwrap().parse().unwrap();
                        return Binary { child, addr, stdout };
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("serve did not say where it listens: {e}, {status:?} (its stderr is above)");
                }
            }
        }
    }

    /// Send `signal` (by name, as kill(1) takes it) and wait for the exit.
    #[cfg(unix)]
    fn stop_with(mut self, signal: &str) -> (std::process::ExitStatus, Vec<String>, Duration) {
        let t = Instant::now();
        let ok =
            std::process::Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(ok.unwrap().success(), "kill -{signal} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve still runs 30 s after SIG{signal}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines = self.stdout.try_iter().collect();
        (status, lines, t.elapsed())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The library's server on a thread of this process, stopped when dropped.
struct InProcess {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    fn start(factory: Factory, tune: impl FnOnce(&mut Config)) -> InProcess {
        let batcher = Batcher::start(BatchConfig::default(), factory).unwrap();
        let mut config = Config::new(Model::tutorial(), serde_json::json!({}));
        tune(&mut config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            serve::run(listener, batcher, config, async move {
                let _ = stopped.await;
            })
        });
        InProcess { addr, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = self.thread.take().unwrap().join();
        if !std::thread::panicking() {
            result.expect("the server thread panicked").expect("the server failed");
        }
    }
}

fn weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/weights/mnist-cnn.safetensors")
}

fn cpu_net() -> CpuInference {
    let ck = checkpoint::load(&weights(), &Model::tutorial()).unwrap();
    CpuInference::new(ck.model, ck.params).unwrap()
}

fn cpu_factory() -> Factory {
    Box::new(|| Ok((Box::new(cpu_net()) as Box<dyn Inference>, Box::new(cpu_net()) as Box<dyn Explain>)))
}

// ---------------------------------------------------------------------------
// A client: ureq for requests a browser or script would send, raw TCP for the
// ones no client library would.

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

struct Answer {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no 'error' in {}", self.text)).to_string()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.unwrap();
    let headers = r.headers().iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = r.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
    Answer { status: r.status().as_u16(), content_type, headers, text }
}

fn get(agent: &ureq::Agent, addr: SocketAddr, path: &str) -> Answer {
    answer(agent.get(format!("http://{addr}{path}")).call())
}

fn post(agent: &ureq::Agent, addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Answer {
    answer(agent.post(format!("http://{addr}{path}")).header("Content-Type", content_type).send(body))
}

/// Send `request` as it is and return the response's status and the whole response
/// (the server closes the connection: every raw request says `Connection: close`,
/// or is one it must refuse).
fn raw(addr: SocketAddr, request: &[u8]) -> (Option<u16>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The server may answer (413, say) and close before all of a large request is
    // written: a failed write is then expected, the answer is what counts.
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok());
    (status, text)
}

fn picture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images").join(name)).unwrap()
}

/// The shipped pictures with the digit `gpu-cnn infer` reads in each, on the backend
/// the served binary runs.
fn pictures_and_infer_digits() -> Vec<(String, Vec<u8>, u64)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images");
    let out = common::stdout_of(common::bin().args(["infer", "--json", "--backend", common::backend()]).arg(&dir));
    let rows: Vec<(String, Vec<u8>, u64)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let file = PathBuf::from(v["file"].as_str().unwrap());
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&file).unwrap(), v["digit"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 10, "{out}");
    rows
}

fn png_dimensions(data_url: &str) -> (u32, u32) {
    use base64::Engine;
    let b64 = data_url.strip_prefix("data:image/png;base64,").expect("a PNG data URL");
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    (img.width(), img.height())
}

/// A PNG of `w`x`h` white pixels: a picture with no digit in it.
fn white_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255])))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

// ---------------------------------------------------------------------------
// The pages and the API, on the real binary.

#[test]
fn the_page_is_self_contained_and_every_file_it_names_is_served() {
    let _t = turn();
    let server = Binary::start(&[]);
    let a = agent();
    for page in ["/", "/run"] {
        let r = get(&a, server.addr, page);
        assert_eq!(r.status, 200, "{page}: {}", r.text);
        assert!(r.content_type.starts_with("text/html"), "{page}: {}", r.content_type);
        assert!(r.header("content-security-policy").is_some_and(|c| c.contains("default-src 'self'")));
        // Every file the page loads comes from this server, and is there.
        let mut named = 0;
        for attr in ["src=\"", "href=\""] {
            for part in r.text.split(attr).skip(1) {
                let url = part.split('"').next().unwrap();
                assert!(url.starts_with('/') && !url.starts_with("//"), "{page} loads {url} from elsewhere");
                let f = get(&a, server.addr, url);
                assert_eq!(f.status, 200, "{page} names {url}, which answers {}", f.status);
                named += 1;
            }
        }
        assert!(named >= 2, "{page} names only {named} files");
    }
    let r = get(&a, server.addr, "/");
    for id in ["id=\"pad\"", "id=\"clear\"", "id=\"file\"", "id=\"digit\"", "id=\"top3\"", "id=\"maps\""] {
        assert!(r.text.contains(id), "the page lacks {id}");
    }
    assert_eq!(get(&a, server.addr, "/static/app.js").content_type, "text/javascript; charset=utf-8");
}

#[test]
fn predictions_match_infer_and_explanations_fit_the_model() {
    let _t = turn();
    let server = Binary::start(&[]);
    let a = agent();
    let model = Model::tutorial();
    for (name, bytes, want) in pictures_and_infer_digits() {
        let ct = if name.ends_with(".jpg") { "image/jpeg" } else { "image/png" };
        let r = post(&a, server.addr, "/api/predict", ct, &bytes);
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        let v = r.json();
        assert_eq!(v["digit"].as_u64(), Some(want), "{name}: {v}");
        let probs: Vec<f64> = v["probabilities"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
        assert_eq!(probs.len(), 10);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-3, "{name}: {probs:?}");
        assert_eq!(v["top3"][0]["digit"].as_u64(), Some(want));
        assert!(v.get("maps").is_none(), "{name}: a plain prediction carries no maps");

        let r = post(&a, server.addr, "/api/predict?explain=1", ct, &bytes);
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        let v = r.json();
        assert_eq!(v["digit"].as_u64(), Some(want), "{name}: explained");
        let maps = v["maps"].as_array().unwrap();
        let want_maps = model.feature_maps();
        assert_eq!(maps.len(), want_maps.len());
        for (m, &(i, pos)) in maps.iter().zip(&want_maps) {
            let shape = model.layers[pos - 1].output;
            assert_eq!(m["layer"].as_str(), Some(model.layers[i].name.as_str()));
            assert_eq!(m["shape"], serde_json::json!([shape.c, shape.h, shape.w]));
            let cols = m["columns"].as_u64().unwrap() as u32;
            let tiles = if shape.flat { 1 } else { shape.c as u32 };
            let (tw, th) = if shape.flat { (shape.c as u32, 1) } else { (shape.w as u32, shape.h as u32) };
            let rows = tiles.div_ceil(cols);
            assert_eq!(png_dimensions(m["png"].as_str().unwrap()), (cols * (tw + 1) - 1, rows * (th + 1) - 1));
        }
        assert_eq!(v["saliency"].as_array().unwrap().len(), 784);
        assert_eq!(png_dimensions(v["saliency_png"].as_str().unwrap()), (28, 28));
        assert_eq!(png_dimensions(v["input_png"].as_str().unwrap()), (28, 28));
        // The input the page shows is the one `infer` prepares.
        let digit = gpu_cnn::preprocess::load_digit_bytes(Path::new(&name), &bytes).unwrap();
        let input: Vec<f32> = v["input"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(input, digit.to_vec(), "{name}");

        // The same input, prepared by the client and sent as JSON, gets the same digit.
        let body = serde_json::json!({ "pixels": digit.to_vec() }).to_string();
        let r = post(&a, server.addr, "/api/predict", "application/json", body.as_bytes());
        assert_eq!(r.json()["digit"].as_u64(), Some(want), "{name} as JSON: {}", r.text);
        assert_eq!(r.json()["prepared"], Value::Bool(false));
    }
}

#[test]
fn the_model_endpoint_is_the_summary_table() {
    let _t = turn();
    let server = Binary::start(&[]);
    let a = agent();
    let v = get(&a, server.addr, "/api/model").json();
    let summary = common::stdout_of(common::bin().arg("summary"));
    assert_eq!(v["table"].as_str(), Some(summary.as_str()));
    assert_eq!(v["params"].as_u64(), Some(121_514));
    let model = Model::tutorial();
    let names: Vec<&str> = v["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, model.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>());
    assert_eq!(v["layers"][0]["output"].as_str(), Some("(16,28,28)"));
    assert!(v["backend"].as_str().is_some_and(|b| !b.is_empty()), "{v}");
    let h = get(&a, server.addr, "/healthz");
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
}

// ---------------------------------------------------------------------------
// Bad input: every refusal is a 4xx with a message that says what was wrong.

#[test]
fn bad_requests_get_a_4xx_that_says_why() {
    let _t = turn();
    let server = Binary::start(&[]);
    let (a, addr) = (agent(), server.addr);
    let predict = |ct: &str, body: &[u8]| post(&a, addr, "/api/predict", ct, body);
    let cases: Vec<(Answer, u16, &str)> = vec![
        (predict("image/png", b""), 400, "no body"),
        (predict("image/png", b"hello, world"), 400, "not an image in a known format"),
        (predict("image/png", &picture("7_black_on_white.png")[..300]), 400, "the picture"),
        (predict("image/png", &white_png(64, 64)), 400, "no digit found"),
        (predict("application/json", b"{\"pixels\": [1, 2,"), 400, "malformed JSON"),
        (predict("application/json", b"{\"pixels\": [1, 2]}"), 400, "2 pixels; expected"),
        (predict("application/json", b"{\"pixel\": []}"), 400, "no 'pixels' key"),
        (predict("application/json", b"\"seven\""), 400, "the JSON is a string"),
        (predict("application/json", format!("[{}\"x\"]", "0,".repeat(783)).as_bytes()), 400, "pixel 783 is a string"),
        (predict("application/json", b"[1e999]"), 400, "malformed JSON"),
        (predict("multipart/form-data; boundary=x", b"--x\r\n\r\n--x--"), 415, "send the picture itself"),
        (get(&a, addr, "/nope"), 404, "no such page: /nope"),
        (get(&a, addr, "/static/nope.js"), 404, "no such file: nope.js"),
        (get(&a, addr, "/api/predict"), 405, "/api/predict does not take GET"),
        (post(&a, addr, "/", "text/plain", b"x"), 405, "/ does not take POST"),
        (get(&a, addr, "/api/run"), 404, "start serve with --run DIR"),
    ];
    for (r, status, needle) in &cases {
        assert_eq!(r.status, *status, "wanted {status} for '{needle}', got {}: {}", r.status, r.text);
        assert!(r.error().contains(needle), "wanted '{needle}' in {}", r.error());
    }
    // The page's files come from the binary, not the disk: no path leads out.
    for path in [
        "/static/../Cargo.toml",
        "/static/..%2f..%2fCargo.toml",
        "/static/%2e%2e/%2e%2e/src/main.rs",
        "/static/..%5c..%5cCargo.toml",
        "/../../../../etc/passwd",
        "/static//etc/passwd",
        "/static/index.html%00.js",
    ] {
        let (status, text) =
            raw(addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(status, Some(404), "{path}: {text}");
        assert!(!text.contains("[package]") && !text.contains("root:"), "{path} leaked a file: {text}");
    }
    assert_eq!(get(&a, addr, "/healthz").status, 200, "the server stopped answering");
}

#[test]
fn an_oversized_body_is_refused_before_it_is_read() {
    let _t = turn();
    let server = InProcess::start(cpu_factory(), |c| c.max_body = 1000);
    let addr = server.addr;
    // Announced: the answer comes at once, with not one byte of the body sent.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 999999999999\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("the body is 999999999999 bytes; the limit is 1000 bytes"), "{text}");
    // Unannounced (chunked): refused once it passes the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 600, "x".repeat(600));
    let body = format!("{chunk}{chunk}0\r\n\r\n");
    let (status, text) = raw(
        addr,
        format!(
            "POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
        )
        .as_bytes(),
    );
    assert_eq!(status, Some(413), "{text}");
    assert!(text.contains("the limit is 1000 bytes"), "{text}");
    // Under the limit it is read (and refused for what it is, not for its size).
    let (status, text) =
        raw(addr, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    assert_eq!(status, Some(400), "{text}");
}

// A picture of 64 megapixels, the most a request may hold, fits in a small PNG and
// takes ~0.5 GB to decode and prepare: 8 sent at once took the server to 4 GB. They
// are prepared at most 4 at a time now, so its memory stays under 2.5 GB (the
// server's own ~0.1 GB, and 4 pictures), and each still gets its answer.
#[cfg(target_os = "linux")]
#[test]
fn pictures_sent_at_once_are_prepared_a_few_at_a_time() {
    let _t = turn();
    let server = Binary::start(&[]);
    let png = white_png(7999, 7999);
    assert!(png.len() < 1 << 20, "the picture is small to send: {} bytes", png.len());
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (png, addr) = (png.clone(), server.addr);
            std::thread::spawn(move || post(&agent(), addr, "/api/predict", "image/png", &png))
        })
        .collect();
    for s in senders {
        let a = s.join().unwrap();
        // A white picture has no digit in it: decoded whole, then refused for that.
        assert_eq!(a.status, 400, "{}", a.text);
        assert!(a.error().contains("the image is blank"), "{}", a.text);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kb < 2_500_000, "the server's memory peaked at {} MB", peak_kb / 1000);
}

// ---------------------------------------------------------------------------
// Slow clients, panics and signals.

#[test]
fn stalled_clients_time_out_without_holding_up_the_others() {
    let _t = turn();
    let server = InProcess::start(cpu_factory(), |c| {
        c.request_timeout = Duration::from_secs(2);
        c.header_timeout = Duration::from_secs(2);
    });
    let addr = server.addr;
    let body = serde_json::json!({ "pixels": vec![0.0f32; 784] }).to_string();
    let stall = |request: String| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    };
    let t = Instant::now();
    // Silent; half a header; a header and half the body it announces.
    let mut stalled: Vec<TcpStream> = (0..20).map(|_| stall(String::new())).collect();
    stalled.extend((0..20).map(|_| stall("POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Le".into())));
    let half_body = |_| {
        stall(format!(
            "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..body.len() / 2]
        ))
    };
    let half: Vec<TcpStream> = (0..20).map(half_body).collect();
    // Meanwhile, everyone else is served at once.
    let a = agent();
    for _ in 0..5 {
        let started = Instant::now();
        let r = post(&a, addr, "/api/predict", "application/json", body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a request behind stalled ones took {:?}",
            started.elapsed()
        );
    }
    // The stalled requests are answered 408 after the request timeout; the stalled
    // connections closed after the header timeout.
    for mut s in half {
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    }
    for mut s in stalled {
        let mut got = Vec::new();
        let n = s.read_to_end(&mut got);
        assert!(n.is_ok(), "a stalled connection was still open after 20 s: {n:?}");
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(8), "the stalled connections were closed only after {took:?}");
}

/// Runs the CPU reference, and panics on an input whose first pixel is POISON.
struct Poisoned(CpuInference);
const POISON: f32 = 0.125;

impl Poisoned {
    fn check(images: &[f32]) {
        if images.chunks(784).any(|i| i[0] == POISON) {
            panic!("poisoned input");
        }
    }
}

impl Inference for Poisoned {
    fn describe(&self) -> String {
        "poisoned cpu".into()
    }
    fn model(&self) -> &Model {
        Inference::model(&self.0)
    }
    fn predict(&mut self, images: &[f32]) -> anyhow::Result<Vec<f32>> {
        Self::check(images);
        self.0.predict(images)
    }
    fn evaluate(&mut self, images: &[f32], labels: &[u32]) -> anyhow::Result<BatchEval> {
        self.0.evaluate(images, labels)
    }
}

impl Explain for Poisoned {
    fn describe(&self) -> String {
        "poisoned cpu".into()
    }
    fn model(&self) -> &Model {
        Explain::model(&self.0)
    }
    fn explain(&mut self, image: &[f32]) -> anyhow::Result<Explanation> {
        Self::check(image);
        let mut ex = self.0.explain(image)?;
        // An explainer that gets its shapes wrong for an input whose second pixel is
        // POISON: the server must say so, not panic encoding its pictures.
        if image[1] == POISON {
            ex.maps[0].values.truncate(5);
        }
        Ok(ex)
    }
}

#[test]
fn a_panicking_executor_fails_its_request_and_is_rebuilt() {
    let _t = turn();
    let built = Arc::new(AtomicUsize::new(0));
    let b = built.clone();
    let factory: Factory = Box::new(move || {
        b.fetch_add(1, Ordering::SeqCst);
        Ok((Box::new(Poisoned(cpu_net())) as Box<dyn Inference>, Box::new(Poisoned(cpu_net())) as Box<dyn Explain>))
    });
    let server = InProcess::start(factory, |_| {});
    let a = agent();
    let pixels = |first: f32, second: f32| {
        let mut p = vec![0.0f32; 784];
        p[0] = first;
        p[1] = second;
        p[300] = 1.0;
        serde_json::json!({ "pixels": p }).to_string()
    };
    let send = |path: &str, body: String| post(&a, server.addr, path, "application/json", body.as_bytes());
    for path in ["/api/predict", "/api/predict?explain=1"] {
        let r = send(path, pixels(POISON, 0.0));
        assert_eq!(r.status, 500, "{path}: {}", r.text);
        assert!(r.error().contains("panicked (poisoned input)"), "{}", r.error());
        assert!(r.error().contains("rebuilt"), "{}", r.error());
        let r = send(path, pixels(0.0, 0.0));
        assert_eq!(r.status, 200, "{path}: the next request: {}", r.text);
    }
    let r = send("/api/predict?explain=1", pixels(0.0, POISON));
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.error().contains("layer conv1.0: 5 values"), "{}", r.error());
    assert_eq!(built.load(Ordering::SeqCst), 3, "built at start and after each of two panics");
    let h = get(&a, server.addr, "/healthz").json();
    assert_eq!(h["rebuilds"].as_u64(), Some(2), "{h}");
}

#[cfg(unix)]
#[test]
fn sigint_and_sigterm_stop_it_cleanly() {
    let _t = turn();
    for signal in ["INT", "TERM"] {
        let server = Binary::start(&[]);
        let a = agent();
        assert_eq!(post(&a, server.addr, "/api/predict", "image/png", &picture("3_mnist_test_18.png")).status, 200);
        let addr = server.addr;
        let (status, lines, took) = server.stop_with(signal);
        assert!(status.success(), "SIG{signal}: {status}");
        assert_eq!(lines.last().map(String::as_str), Some("stopped"), "SIG{signal}: {lines:?}");
        assert!(took < Duration::from_secs(10), "SIG{signal} took {took:?}");
        assert!(TcpStream::connect(addr).is_err(), "still listening after SIG{signal}");
    }
}

// ---------------------------------------------------------------------------
// The training-run view's data.

#[test]
fn the_run_endpoint_follows_a_growing_metrics_file() {
    let _t = turn();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let server = InProcess::start(cpu_factory(), |c| c.run_dir = Some(run.clone()));
    let a = agent();
    let v = get(&a, server.addr, "/api/run").json();
    assert_eq!(v["exists"], Value::Bool(false), "{v}");
    std::fs::create_dir(&run).unwrap();
    let mut w = gpu_cnn::metrics_log::MetricsWriter::start(&run.join("metrics.jsonl"), "serve-test", String::new());
    use gpu_cnn::metrics_log::Record;
    w.train_point(Record::Train { step: 50, epoch: 1, loss: 0.5, accuracy: 0.75 }, 390.0, 1e-3).unwrap();
    // As train does at its first checkpoint: the file appears, and grows line by line after.
    w.commit().unwrap();
    let v = get(&a, server.addr, "/api/run").json();
    assert_eq!(v["train"], serde_json::json!([[50, 0.5, 0.75]]), "{v}");
    w.train_point(Record::Train { step: 100, epoch: 1, loss: 0.25, accuracy: 0.875 }, 390.0, 1e-3).unwrap();
    w.test_point(Record::Test { step: 100, epoch: 1, loss: 0.125, accuracy: 0.96875 }).unwrap();
    drop(w);
    std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("metrics.jsonl"))
        .unwrap()
        .write_all(b"{\"step\": 1")
        .unwrap();
    let v = get(&a, server.addr, "/api/run").json();
    assert_eq!(v["train"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["test"], serde_json::json!([[100, 0.125, 0.96875]]), "{v}");
    assert!(v["warnings"][0].as_str().unwrap().contains("metrics.jsonl:4: truncated last line"), "{v}");
}

// ---------------------------------------------------------------------------
// Load: many clients at once, every answer checked, batching visible.

struct Figures {
    clients: usize,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    per_s: f64,
    /// Batches the worker ran for these requests.
    batches: u64,
}

fn worker_counts(addr: SocketAddr) -> (u64, u64) {
    let h = get(&agent(), addr, "/healthz").json();
    (h["predictions"].as_u64().unwrap(), h["batches"].as_u64().unwrap())
}

/// `requests` predictions from `clients` threads, each with its own connection,
/// cycling through the pictures; every answer must be a 200 with `infer`'s digit.
fn load(addr: SocketAddr, pictures: &[(String, Vec<u8>, u64)], clients: usize, requests: usize) -> Figures {
    let (predictions_before, batches_before) = worker_counts(addr);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let latencies = Mutex::new(Vec::with_capacity(requests));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let a = agent();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    let (name, bytes, want) = &pictures[i % pictures.len()];
                    let t = Instant::now();
                    let r = post(&a, addr, "/api/predict", "application/octet-stream", bytes);
                    mine.push(t.elapsed().as_secs_f64() * 1e3);
                    let got = (r.status == 200).then(|| r.json()["digit"].as_u64()).flatten();
                    if got != Some(*want) {
                        failures.lock().unwrap().push(format!("request {i} ({name}): {} {}", r.status, r.text));
                    }
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {requests} failed, first: {}", failures.len(), failures[0]);
    let mut l = latencies.into_inner().unwrap();
    assert_eq!(l.len(), requests, "answers lost");
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1];
    let (predictions, batches) = worker_counts(addr);
    assert_eq!(predictions - predictions_before, requests as u64, "the worker ran other than what was sent");
    Figures {
        clients,
        requests,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        per_s: requests as f64 / elapsed,
        batches: batches - batches_before,
    }
}

#[test]
fn under_load_no_answer_is_lost_or_wrong_and_batching_raises_throughput() {
    let _t = turn();
    let requests: usize = std::env::var("GPU_CNN_SERVE_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let pictures = pictures_and_infer_digits();
    let server = Binary::start(&[]);
    let a = agent();
    // Warm up: the first batch of each size builds its plan.
    load(server.addr, &pictures, 32, 64);
    // One client never shares a batch; as many requests as the 32 get, so both
    // figures are measured over the same work.
    let one = load(server.addr, &pictures, 1, requests);
    let many = load(server.addr, &pictures, 32, requests);
    let h = get(&a, server.addr, "/healthz").json();
    eprintln!("\nserve load on {}", h["backend"]);
    eprintln!("| clients | requests | p50 ms | p99 ms | requests/s | pictures a batch |");
    eprintln!("| --- | --- | --- | --- | --- | --- |");
    for f in [&one, &many] {
        let per_batch = f.requests as f64 / f.batches as f64;
        eprintln!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {per_batch:.1} |",
            f.clients, f.requests, f.p50_ms, f.p99_ms, f.per_s
        );
    }
    eprintln!("largest batch {}\n", h["largest_batch"]);
    // A lone client's request has no one to wait for: it runs alone, at once.
    assert_eq!(one.batches, one.requests as u64, "one client's requests were batched");
    assert!(many.batches < many.requests as u64 / 2, "32 clients' requests were seldom batched: {h}");
    assert!(
        many.per_s > one.per_s,
        "32 clients got {:.0} requests/s, 1 client {:.0}: batching did not raise throughput",
        many.per_s,
        one.per_s
    );
}

// ---------------------------------------------------------------------------
// A bounded fuzz of bodies and headers: each case is wrong by construction, so
// each must get a 4xx, and the server must go on answering.

fn fuzz_case(rng: &mut Rng, png: &[u8], limit: usize) -> (String, Vec<u8>) {
    let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
    let bytes = |rng: &mut Rng, n: usize| -> Vec<u8> { (0..n).map(|_| pick(rng, 256) as u8).collect() };
    let request = |ct: &str, body: &[u8]| {
        let mut r =
            format!("POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                .into_bytes();
        r.extend(body);
        r
    };
    // Where the image data of the PNG ends: a cut before it leaves the picture incomplete.
    let iend = png.len() - 12;
    match pick(rng, 10) {
        0 => {
            let cut = pick(rng, iend);
            (format!("PNG cut at {cut}"), request("image/png", &png[..cut]))
        }
        1 => {
            // A flipped bit past the signature breaks a chunk's CRC (or its length).
            let mut p = png.to_vec();
            let at = 8 + pick(rng, iend - 8);
            p[at] ^= 1 << pick(rng, 8);
            (format!("PNG bit flipped at {at}"), request("image/png", &p))
        }
        2 => {
            let magic: &[&[u8]] = &[b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF", b"II*\0", b""];
            let mut body = magic[pick(rng, magic.len())].to_vec();
            let n = pick(rng, 2000);
            body.extend(bytes(rng, n));
            let ct = ["image/png", "image/jpeg", "application/octet-stream", "text/plain"][pick(rng, 4)];
            (format!("{} random bytes as {ct}", body.len()), request(ct, &body))
        }
        3 => {
            // A whole JSON document cut short is never a whole document.
            let doc = serde_json::json!({ "pixels": vec![0.5f32; 784] }).to_string();
            let cut = 1 + pick(rng, doc.len() - 1);
            (format!("JSON cut at {cut}"), request("application/json", &doc.as_bytes()[..cut]))
        }
        4 => {
            let n = [0, 1, 783, 785, 10_000][pick(rng, 5)];
            let mut v: Vec<Value> = (0..n).map(|_| Value::from(0.5)).collect();
            if n == 784 || pick(rng, 2) == 0 {
                let bad = [Value::Null, Value::from("x"), serde_json::json!([1]), serde_json::json!({})];
                let at = pick(rng, v.len().max(1));
                if at < v.len() {
                    v[at] = bad[pick(rng, bad.len())].clone();
                }
            }
            let doc = if pick(rng, 2) == 0 { serde_json::json!({ "pixels": v }) } else { Value::Array(v) };
            (format!("JSON of {n} pixels"), request("application/json; charset=utf-8", doc.to_string().as_bytes()))
        }
        5 => {
            let boundary = format!("b{}", pick(rng, 1 << 30));
            let mut body =
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n").into_bytes();
            body.extend(&png[..pick(rng, png.len())]);
            (
                format!("multipart, boundary {boundary}"),
                request(&format!("multipart/form-data; boundary={boundary}"), &body),
            )
        }
        6 => {
            let len = [limit as u64 + 1, u32::MAX as u64, u64::MAX][pick(rng, 3)];
            let head =
                format!("POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            (format!("Content-Length {len}"), head.into_bytes())
        }
        7 => {
            // Less body than announced, then the client stops sending.
            let mut r = format!(
                "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                png.len() + 1 + pick(rng, 1000)
            )
            .into_bytes();
            r.extend(png);
            ("a short body".into(), r)
        }
        8 => {
            let sizes = ["zz", "-1", "ffffffffffffffffffff", "5\r\nabc", ""];
            let size = sizes[pick(rng, sizes.len())];
            let r = format!(
                "POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n"
            );
            (format!("chunk size {size:?}"), r.into_bytes())
        }
        _ => {
            // A request head with random bytes in it: no body at all, or a broken head.
            let mut head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\n".to_vec();
            let n = 1 + pick(rng, 40);
            let junk = bytes(rng, n);
            if pick(rng, 2) == 0 {
                head.extend(b"X-");
                head.extend(junk.iter().map(|b| if b.is_ascii_alphanumeric() { *b } else { b'!' }));
                head.extend(b": y\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                ("a POST without a body".into(), head)
            } else {
                head.extend(&junk);
                head.extend(b"\x01\r\n\r\n");
                (format!("a head with {} junk bytes", junk.len()), head)
            }
        }
    }
}

#[test]
fn fuzzed_bodies_and_headers_get_4xx_and_the_server_goes_on() {
    let _t = turn();
    let cases: usize = std::env::var("GPU_CNN_SERVE_FUZZ").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let limit = 64 << 10;
    // A short timeout for the cases that announce more body than they send.
    let server = InProcess::start(cpu_factory(), |c| {
        c.max_body = limit;
        c.request_timeout = Duration::from_secs(2);
    });
    let png = picture("7_black_on_white.png");
    let mut rng = Rng::new(11);
    let a = agent();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..cases {
        let (what, request) = fuzz_case(&mut rng, &png, limit);
        let (status, text) = raw(server.addr, &request);
        let status = status.unwrap_or_else(|| panic!("case {i} ({what}): no HTTP answer: {text:?}"));
        assert!((400..500).contains(&status), "case {i} ({what}): {status}\n{text}");
        *statuses.entry(status).or_insert(0) += 1;
        if i % 50 == 49 {
            assert_eq!(get(&a, server.addr, "/healthz").status, 200, "after case {i}");
        }
    }
    eprintln!("{cases} fuzz cases, answers by status: {statuses:?}");
    let r = post(&a, server.addr, "/api/predict", "image/png", &png);
    assert_eq!((r.status, r.json()["digit"].as_u64()), (200, Some(7)), "{}", r.text);
}
