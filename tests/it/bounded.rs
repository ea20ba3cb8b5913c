//! Issue 13, "bounded everything" and "logs that belong to their analysis": every log
//! line of a worker step carries its own analysis's span and no other's.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canary::scheduler::{Clock, CompressedClock, Worker};
use canary::store::Store;

use crate::worker::{CountingActuator, T0, options, registry, sqlite_file, submit};

/// A `tracing` writer that keeps every line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The analysis ids a log line names in `analysis=` fields (span or event).
fn analyses_named(line: &str) -> Vec<&str> {
    line.match_indices("analysis=")
        .map(|(at, _)| {
            let rest = &line[at + "analysis=".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Issue 13, defect 4: a span entered across an `.await` in the worker made other
/// analyses' steps start inside it, so their lines carried two or more `step{...}`
/// spans and grepping one analysis id returned other analyses' lines.
#[tokio::test]
async fn every_worker_log_line_names_one_analysis_its_own() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // The test's runtime has one thread, so every step runs under this subscriber.
    let _default = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock: Arc<dyn Clock> = Arc::new(CompressedClock::new(T0, 60.0));
    let mut ids = Vec::new();
    for index in 0..12 {
        let source = if index % 3 == 0 {
            "regressing"
        } else {
            "healthy"
        };
        ids.push(submit(store.as_ref(), source, &format!("flag-{index}")).await.id);
    }
    let worker = Worker::new(store.clone(), registry(3, &flags), clock, options("w1", 4));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    // A hang guard, not a speed target: the rollouts take about 5 s at 60× speed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut finished = 0;
        for id in &ids {
            if store.get_analysis(*id).await.unwrap().unwrap().state.is_final() {
                finished += 1;
            }
        }
        if finished == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "unfinished after 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    store.close().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let mut step_lines = 0;
    for line in text.lines() {
        let named = analyses_named(line);
        if named.is_empty() {
            continue;
        }
        assert!(
            line.matches("step{analysis=").count() <= 1,
            "a line inside more than one step span: {line}"
        );
        assert!(
            named.iter().all(|id| *id == named[0]),
            "a line naming two analyses: {line}"
        );
        assert!(
            ids.iter().any(|id| id.to_string() == named[0]),
            "a line naming an unknown analysis: {line}"
        );
        if line.contains("step{analysis=") {
            step_lines += 1;
        }
    }
    assert!(
        step_lines >= 12,
        "the steps logged inside their spans:\n{text}"
    );
}
