//! Logging with `tracing`: `LOG_FORMAT=simple` writes text to stderr,
//! `json` writes one object per line to stdout (as upstream), at `LOG_LEVEL`.
//! `RUST_LOG`, when set, overrides the level with a full filter.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogConfig, LogFormat};

/// Installs the global subscriber. Safe to call once per process; a second
/// call (tests) is ignored.
pub fn init(cfg: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(cfg.level.as_str()));
    let result = match cfg.format {
        LogFormat::Simple => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(!cfg.no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(true)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .with_current_span(false)
            .try_init(),
    };
    // Err only when a subscriber is already installed
    let _ = result;
}

/// The version string: crate version and, when built from git, the commit.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Logs the one start-up line, then the configuration's warnings.
pub fn startup(command: &str, cfg: &Config) {
    tracing::info!(
        version = version(),
        command,
        features = %cfg.features(),
        "k8gb starting"
    );
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
}
