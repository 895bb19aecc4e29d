//! The flags every mode of the binary shares: `--config FILE` (read before the flags are parsed,
//! declared here so that it shows in `--help` and is accepted in place) and `--log-format`.

use std::path::PathBuf;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--config FILE` as every mode that reads one declares it (the file is read before the flags
/// are parsed; this makes it show in `--help` and accepted in place).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfigArg {
    /// A TOML file with any of this mode's flags as keys, and an [auth] table.
    #[arg(long, env = "CAPSTAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines on stderr as text or as JSON objects (`[log] format` in the config file);
    /// RUST_LOG filters them.
    #[arg(long, env = "CAPSTAN_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}
