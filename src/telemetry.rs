//! Logging set-up: a `tracing` subscriber writing to stderr, so stdout stays free for
//! reports that pipelines parse. `RUST_LOG` overrides the default level (`warn`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
