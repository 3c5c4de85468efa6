//! The one worker thread that owns the executors. The device is one, so every
//! request goes through here: predictions that arrive together are run as one batch
//! (one GPU submission, one read-back), explanations one at a time after them.
//!
//! The executors are built on this thread and never leave it, so they need not be
//! `Send`, and wgpu's GL backend, which wants its context on one thread, is content.

use anyhow::{anyhow, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::executor::{Explain, Explanation, Inference};

/// The two executors the worker runs, built on its thread.
pub type Executors = (Box<dyn Inference>, Box<dyn Explain>);

/// Builds the executors; called once at start and again after an executor panicked,
/// since its buffers may then be in any state.
pub type Factory = Box<dyn FnMut() -> Result<Executors> + Send>;

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// The most pictures run in one submission.
    pub max_batch: usize,
    /// How long the first prediction of a batch waits for others to join it, when
    /// others are on their way (announced, and still reading or preparing their
    /// picture): a lone client never waits. Zero still batches what queued up
    /// while the previous batch ran.
    pub wait: Duration,
    /// Requests waiting for the worker; past this, a request is refused at once (503)
    /// instead of waiting behind a queue it cannot get through in time.
    pub queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_batch: 64, wait: Duration::from_millis(2), queue: 1024 }
    }
}

/// Why a request got no answer from the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerError {
    /// The queue is full: the server is overloaded (503).
    Busy,
    /// The worker is gone: the server is stopping (503).
    Stopped,
    /// The executor failed or panicked on this request's batch (500).
    Failed(String),
}

/// What the worker has done, for `/healthz` and for tests that check batching happens.
#[derive(Debug, Default)]
pub struct Counters {
    pub predictions: AtomicU64,
    pub batches: AtomicU64,
    pub largest_batch: AtomicU64,
    pub explanations: AtomicU64,
    /// Times the executors were built again after a panic.
    pub rebuilds: AtomicU64,
}

type Reply<T> = oneshot::Sender<std::result::Result<T, WorkerError>>;

enum Job {
    Predict { image: Vec<f32>, reply: Reply<Vec<f32>> },
    Explain { image: Vec<f32>, reply: Reply<Explanation> },
}

pub struct Batcher {
    tx: Option<mpsc::SyncSender<Job>>,
    /// Predictions announced and not yet queued.
    coming: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<Counters>,
    /// The inference executor's `describe()`.
    pub describe: String,
    /// Values in one input, and classes in one output.
    pub input_len: usize,
    pub classes: usize,
}

impl Batcher {
    /// Start the worker and build the executors on it; returns once they are built,
    /// or with the factory's error.
    pub fn start(config: BatchConfig, mut factory: Factory) -> Result<Batcher> {
        let (tx, rx) = mpsc::sync_channel::<Job>(config.queue.max(1));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(String, usize, usize)>>();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let coming = Arc::new(AtomicUsize::new(0));
        let worker_sees = coming.clone();
        let thread = std::thread::Builder::new()
            .name("gpu-cnn executor".into())
            .spawn(move || {
                let mut executors = match build(&mut factory) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let model = executors.0.model();
                let _ = ready_tx.send(Ok((executors.0.describe(), model.input.numel(), model.classes())));
                drop(ready_tx);
                run(&rx, &mut executors, &mut factory, config, &c, &worker_sees);
            })
            .map_err(|e| anyhow!("cannot start the executor thread: {e}"))?;
        let (describe, input_len, classes) = match ready_rx.recv() {
            Ok(r) => r?,
            Err(_) => return Err(anyhow!("the executor thread ended before building its executors")),
        };
        Ok(Batcher { tx: Some(tx), coming, thread: Some(thread), counters, describe, input_len, classes })
    }

    /// Say that a prediction is on its way (its body is still being read or its
    /// picture prepared), so the batch now being gathered waits for it.
    pub fn announce(&self) -> Announced<'_> {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Announced(&self.coming)
    }

    /// Class probabilities for one input, run in a batch with whatever else is queued.
    /// `announced` is this request's announcement, withdrawn once it is queued.
    pub async fn predict(
        &self,
        image: Vec<f32>,
        announced: Option<Announced<'_>>,
    ) -> std::result::Result<Vec<f32>, WorkerError> {
        self.submit(|reply| Job::Predict { image, reply }, announced).await
    }

    /// One input forward and back, with its feature maps and saliency.
    pub async fn explain(&self, image: Vec<f32>) -> std::result::Result<Explanation, WorkerError> {
        self.submit(|reply| Job::Explain { image, reply }, None).await
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
        announced: Option<Announced<'_>>,
    ) -> std::result::Result<T, WorkerError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(WorkerError::Stopped)?;
        let sent = tx.try_send(job(reply));
        // Queued (or refused): no longer on its way.
        drop(announced);
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(WorkerError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(WorkerError::Stopped),
        }
        answer.await.map_err(|_| WorkerError::Stopped)?
    }
}

/// A prediction on its way to the worker; withdrawn when dropped (queued, or the
/// request failed before it got there).
pub struct Announced<'a>(&'a AtomicUsize);

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Batcher {
    /// Closing the queue ends the worker once it has answered what is queued.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The factory, with a panic in it turned into an error.
fn build(factory: &mut Factory) -> Result<Executors> {
    catch_unwind(AssertUnwindSafe(factory))
        .unwrap_or_else(|p| Err(anyhow!("building the executors panicked: {}", panic_message(&p))))
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

fn run(
    rx: &mpsc::Receiver<Job>,
    executors: &mut Executors,
    factory: &mut Factory,
    config: BatchConfig,
    c: &Counters,
    coming: &AtomicUsize,
) {
    let max = config.max_batch.max(1);
    // Blocks until a job arrives; ends when every sender is gone and the queue is empty.
    while let Ok(first) = rx.recv() {
        let (mut predicts, mut explains) = (Vec::new(), Vec::new());
        let mut take = |job, predicts: &mut Vec<_>| match job {
            Job::Predict { image, reply } => predicts.push((image, reply)),
            Job::Explain { image, reply } => explains.push((image, reply)),
        };
        take(first, &mut predicts);
        let deadline = Instant::now() + config.wait;
        while predicts.len() < max {
            match rx.try_recv() {
                Ok(job) => take(job, &mut predicts),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Only a batch that has begun is worth waiting for, and only for
                    // predictions that are on their way.
                    if predicts.is_empty() || left.is_zero() || coming.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(job) => take(job, &mut predicts),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
        }
        // A client that hung up no longer needs its answer.
        predicts.retain(|(_, reply)| !reply.is_closed());
        explains.retain(|(_, reply)| !reply.is_closed());
        if !predicts.is_empty() {
            predict_batch(predicts, executors, factory, c);
        }
        for (image, reply) in explains {
            let result = guarded(executors, factory, c, |(_, explainer)| explainer.explain(&image));
            c.explanations.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(result);
        }
    }
}

fn predict_batch(
    jobs: Vec<(Vec<f32>, Reply<Vec<f32>>)>,
    executors: &mut Executors,
    factory: &mut Factory,
    c: &Counters,
) {
    let n = jobs.len();
    c.batches.fetch_add(1, Ordering::Relaxed);
    c.predictions.fetch_add(n as u64, Ordering::Relaxed);
    c.largest_batch.fetch_max(n as u64, Ordering::Relaxed);
    let flat: Vec<f32> = jobs.iter().flat_map(|(image, _)| image.iter().copied()).collect();
    let classes = executors.0.model().classes();
    match guarded(executors, factory, c, |(net, _)| net.predict(&flat)) {
        Ok(probs) if probs.len() == n * classes => {
            for ((_, reply), row) in jobs.into_iter().zip(probs.chunks(classes)) {
                let _ = reply.send(Ok(row.to_vec()));
            }
        }
        Ok(probs) => {
            let e = WorkerError::Failed(format!("the executor returned {} values for {n}x{classes}", probs.len()));
            jobs.into_iter().for_each(|(_, reply)| drop(reply.send(Err(e.clone()))));
        }
        Err(e) => jobs.into_iter().for_each(|(_, reply)| drop(reply.send(Err(e.clone())))),
    }
}

/// Run `f` on the executors. A panic becomes this request's error, and the executors
/// are built afresh so the next request does not meet a half-updated one.
fn guarded<T>(
    executors: &mut Executors,
    factory: &mut Factory,
    c: &Counters,
    f: impl FnOnce(&mut Executors) -> Result<T>,
) -> std::result::Result<T, WorkerError> {
    match catch_unwind(AssertUnwindSafe(|| f(executors))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(WorkerError::Failed(format!("{e:#}"))),
        Err(p) => {
            let what = panic_message(&p);
            c.rebuilds.fetch_add(1, Ordering::Relaxed);
            let rebuilt = match build(factory) {
                Ok(fresh) => {
                    *executors = fresh;
                    "the executors were rebuilt".to_string()
                }
                Err(e) => format!("rebuilding them failed too ({e:#}); the old ones are kept"),
            };
            Err(WorkerError::Failed(format!("the executor panicked ({what}); {rebuilt}")))
        }
    }
}
