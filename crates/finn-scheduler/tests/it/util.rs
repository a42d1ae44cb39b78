use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use finn_scheduler::{Scheduler, SchedulerOptions, TaskError, TaskSpec};
use tokio::time::Instant;

pub fn scheduler() -> Scheduler {
    Scheduler::new(SchedulerOptions {
        jitter_seed: Some(7),
        ..SchedulerOptions::default()
    })
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A task spec with a 1 ms floor, so intervals below a second are allowed in tests.
pub fn spec(id: &str, interval: Duration) -> TaskSpec {
    TaskSpec::new(id, interval).min_delay(ms(1))
}

/// A shared, ordered log of (label, time).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<(String, Instant)>>>);

impl Log {
    pub fn push(&self, label: impl Into<String>) {
        self.0.lock().unwrap().push((label.into(), Instant::now()));
    }

    pub fn labels(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    pub fn times(&self, label: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn count(&self, label: &str) -> usize {
        self.times(label).len()
    }
}

/// Registers a task whose handler logs `id` on entry and sleeps `work`, then succeeds.
pub fn register_logging(s: &Scheduler, spec: TaskSpec, log: &Log, work: Duration) {
    let id = spec.id().to_string();
    let log = log.clone();
    s.register(spec, move |_| {
        let (log, id) = (log.clone(), id.clone());
        async move {
            log.push(&id);
            tokio::time::sleep(work).await;
            log.push(format!("{id}-end"));
            Ok::<(), TaskError>(())
        }
    })
    .unwrap();
}

/// Lets spawned tasks run without moving the paused clock.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Captures `tracing` output of the current thread (the paused test runtime is single-threaded).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
