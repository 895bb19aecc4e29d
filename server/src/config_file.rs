//! `--config capstan.toml` for `capstan dev|server|gateway|cell`: every flag is also a top-level
//! key of the file (the flag's long name, `-` or `_`), and `[auth]` holds what flags cannot say.
//! Precedence: a flag on the command line, then its `CAPSTAN_*` environment variable, then the
//! file, then the default. An unknown key or a bad value stops the start with a message naming it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::builder::ArgAction;

use crate::auth::config::{AuthConfig, AuthSettings};

/// `--config FILE` and `--log-format` as every mode declares them (the client crate's).
pub use capstan_client::flags::ConfigArg;

/// Environment variable naming the config file (as `--config` does).
pub const CONFIG_ENV: &str = "CAPSTAN_CONFIG";
/// The modes that read a config file.
pub const MODES: [&str; 4] = ["dev", "server", "gateway", "cell"];

/// A config file, read and parsed.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Top-level keys (flags) in file order.
    flags: Vec<(String, toml::Value)>,
    auth: AuthConfig,
}

impl ConfigFile {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
        let mut flags = Vec::new();
        let mut auth = AuthConfig::default();
        for (key, value) in table {
            match (key.as_str(), value) {
                ("auth", toml::Value::Table(t)) => {
                    auth = t
                        .try_into()
                        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: [auth]: {}", path.display(), e.message()))?;
                }
                // `[log] format = "json"` is the flag `log-format`.
                ("log", toml::Value::Table(t)) => {
                    flags.extend(t.into_iter().map(|(k, v)| (format!("log-{}", k.replace('_', "-")), v)));
                }
                (_, toml::Value::Table(_)) => {
                    bail!("{}: unknown table [{key}] (known: [auth], [log])", path.display())
                }
                (_, v) => flags.push((key.replace('_', "-"), v)),
            }
        }
        Ok(Self {
            path: path.to_owned(),
            flags,
            auth,
        })
    }

    /// `[auth]`, with the files it names read relative to the config file's folder.
    pub fn auth(&self) -> anyhow::Result<AuthSettings> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        self.auth.load(base).with_context(|| format!("{}", self.path.display()))
    }

    /// The file's flags as command-line arguments for `mode`, leaving out those whose
    /// environment variable is set (the environment wins over the file).
    pub fn args_for(&self, cmd: &clap::Command, mode: &str) -> anyhow::Result<Vec<OsString>> {
        self.file_args(cmd, mode, true)
    }

    /// The file's flags as command-line arguments for `mode`; with `skip_env`, without those
    /// whose environment variable is set.
    fn file_args(&self, cmd: &clap::Command, mode: &str, skip_env: bool) -> anyhow::Result<Vec<OsString>> {
        let sub = cmd.find_subcommand(mode).with_context(|| format!("no mode '{mode}'"))?;
        let mut out = Vec::new();
        for (key, value) in &self.flags {
            let arg = sub
                .get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
                .with_context(|| {
                    let known: Vec<&str> = sub
                        .get_arguments()
                        .filter_map(|a| a.get_long())
                        .filter(|l| *l != "config" && *l != "help")
                        .collect();
                    format!(
                        "{}: unknown key '{key}' for `capstan {mode}` (known: {})",
                        self.path.display(),
                        known.join(", ")
                    )
                })?;
            if skip_env && arg.get_env().is_some_and(|e| std::env::var_os(e).is_some()) {
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(n) => Ok(n.to_string()),
                        _ => bail!("{}: key '{key}': a list of strings or numbers", self.path.display()),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(","),
                _ => bail!("{}: key '{key}': unsupported value", self.path.display()),
            };
            match arg.get_action() {
                ArgAction::SetTrue => match value {
                    toml::Value::Boolean(true) => out.push(OsString::from(format!("--{key}"))),
                    toml::Value::Boolean(false) => {}
                    _ => bail!("{}: key '{key}': true or false", self.path.display()),
                },
                _ => out.push(OsString::from(format!("--{key}={text}"))),
            }
        }
        Ok(out)
    }

    /// Every flag key is known to at least one mode (or to `mode` when given), and every value
    /// parses as that mode's flag parses it at start (numbers, addresses, durations, choices);
    /// `[auth]` loads. The modes the file fits.
    pub fn check(&self, cmd: &clap::Command, mode: Option<&str>) -> anyhow::Result<Vec<&'static str>> {
        let modes: Vec<&'static str> = MODES.iter().copied().filter(|m| mode.is_none_or(|x| x == *m)).collect();
        let mut fits = Vec::new();
        let mut errors = Vec::new();
        for m in &modes {
            match self.file_args(cmd, m, false) {
                Ok(args) => {
                    self.parse_values(cmd, m, args)?;
                    fits.push(*m);
                }
                Err(e) => errors.push(e),
            }
        }
        if fits.is_empty() {
            match errors.into_iter().next() {
                Some(e) => return Err(e),
                None => bail!("no such mode"),
            }
        }
        self.auth()?;
        Ok(fits)
    }

    /// Parses `args` (this file's flags for `mode`) with the mode's own parser, as a start would;
    /// a flag the file cannot be expected to hold (one required on the command line) is no error.
    fn parse_values(&self, cmd: &clap::Command, mode: &str, args: Vec<OsString>) -> anyhow::Result<()> {
        let argv = [OsString::from("capstan"), OsString::from(mode)]
            .into_iter()
            .chain(args);
        match cmd.clone().try_get_matches_from(argv) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == clap::error::ErrorKind::MissingRequiredArgument => Ok(()),
            Err(e) => {
                let message = e.to_string();
                let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ");
                bail!("{}: for `capstan {mode}`: {first}", self.path.display())
            }
        }
    }
}

/// The config file named on the command line (`--config F`, `--config=F`) or by `CAPSTAN_CONFIG`.
pub fn named_in(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(2);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// `argv` with the file's flags put right after the mode, so that the command line's own flags
/// (later) override them.
pub fn expand(argv: Vec<OsString>, cmd: &clap::Command) -> anyhow::Result<(Vec<OsString>, Option<ConfigFile>)> {
    let Some(mode) = argv.get(1).map(|m| m.to_string_lossy().into_owned()) else {
        return Ok((argv, None));
    };
    if !MODES.contains(&mode.as_str()) {
        return Ok((argv, None));
    }
    let Some(path) = named_in(&argv) else {
        return Ok((argv, None));
    };
    let file = ConfigFile::read(&path)?;
    let injected = file.args_for(cmd, &mode)?;
    let mut out = Vec::with_capacity(argv.len() + injected.len());
    out.extend(argv[..2].iter().cloned());
    out.extend(injected);
    out.extend(argv[2..].iter().cloned());
    Ok((out, Some(file)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("capstan").args_override_self(true).subcommand(
            Command::new("server")
                .args_override_self(true)
                .arg(Arg::new("config").long("config"))
                .arg(Arg::new("http").long("http").default_value("a"))
                .arg(Arg::new("journal-records-max").long("journal-records-max"))
                .arg(Arg::new("log-format").long("log-format"))
                .arg(Arg::new("insecure").long("insecure").action(ArgAction::SetTrue))
                .arg(Arg::new("grpc").long("grpc").env("CAPSTAN_TEST_CONFIG_GRPC")),
        )
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capstan.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    fn argv(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_line_beats_the_file_which_beats_the_default() {
        let (_d, path) = file("http = \"from-file\"\njournal_records_max = 5\ninsecure = true\n");
        let p = path.display().to_string();
        let (args, _) = expand(argv(&["capstan", "server", "--config", &p, "--http", "cli"]), &cmd()).expect("expand");
        let m = cmd().get_matches_from(args);
        let s = m.subcommand_matches("server").expect("server");
        assert_eq!(s.get_one::<String>("http").map(String::as_str), Some("cli"));
        assert_eq!(
            s.get_one::<String>("journal-records-max").map(String::as_str),
            Some("5")
        );
        assert!(s.get_flag("insecure"));
        let (args, _) = expand(argv(&["capstan", "server", &format!("--config={p}")]), &cmd()).expect("expand");
        let m = cmd().get_matches_from(args);
        let s = m.subcommand_matches("server").expect("server");
        assert_eq!(s.get_one::<String>("http").map(String::as_str), Some("from-file"));
    }

    #[test]
    fn check_parses_every_value_as_a_start_would() {
        let typed = Command::new("capstan").subcommand(
            Command::new("cell")
                .arg(Arg::new("config").long("config"))
                .arg(Arg::new("id").long("id").required(true))
                .arg(
                    Arg::new("http-connections-max")
                        .long("http-connections-max")
                        .value_parser(clap::value_parser!(usize)),
                ),
        );
        let (_d, path) = file("http_connections_max = \"lots\"\n");
        let e = ConfigFile::read(&path)
            .expect("read")
            .check(&typed, None)
            .expect_err("a number that is not one");
        let e = e.to_string();
        assert!(e.contains("'lots'") && e.contains("--http-connections-max"), "{e}");
        let (_d, path) = file("http_connections_max = -3\n");
        assert!(ConfigFile::read(&path).expect("read").check(&typed, None).is_err());
        // a good value passes; a flag required on the command line (`--id`) is not asked of a file
        let (_d, path) = file("http_connections_max = 10\n");
        let fits = ConfigFile::read(&path)
            .expect("read")
            .check(&typed, None)
            .expect("fits");
        assert_eq!(fits, ["cell"]);
    }

    #[test]
    fn the_log_table_is_the_log_flags() {
        let (_d, path) = file("[log]\nformat = \"json\"\n");
        let args = ConfigFile::read(&path)
            .expect("read")
            .args_for(&cmd(), "server")
            .expect("args");
        assert_eq!(args, vec![OsString::from("--log-format=json")]);
        let (_d, path) = file("[log]\nlevel = \"debug\"\n");
        let e = ConfigFile::read(&path)
            .expect("read")
            .args_for(&cmd(), "server")
            .expect_err("unknown");
        assert!(e.to_string().contains("unknown key 'log-level'"), "{e}");
    }

    #[test]
    fn an_unknown_key_or_table_is_named() {
        let (_d, path) = file("htp = \"x\"\n");
        let e = ConfigFile::read(&path)
            .expect("read")
            .args_for(&cmd(), "server")
            .expect_err("unknown");
        assert!(e.to_string().contains("unknown key 'htp'"), "{e}");
        let (_d, path) = file("[tls]\nx = 1\n");
        let e = ConfigFile::read(&path).expect_err("unknown table");
        assert!(e.to_string().contains("[tls]"), "{e}");
        let (_d, path) = file("[auth]\nenabeld = true\n");
        let e = ConfigFile::read(&path).expect_err("unknown auth key");
        assert!(format!("{e:#}").contains("enabeld"), "{e:#}");
    }

    #[test]
    fn auth_on_needs_a_key_and_valid_hashes_and_says_which_is_wrong() {
        let (_d, path) = file("[auth]\nenabled = true\n");
        let e = ConfigFile::read(&path).expect("read").auth().expect_err("no key");
        assert!(format!("{e:#}").contains("auth.keys"), "{e:#}");
        let (d, path) = file("");
        let (_, pem) = crate::auth::keys::SigningKey::generate("k1").expect("key");
        std::fs::write(d.path().join("k1.pem"), pem).expect("write");
        std::fs::write(
            &path,
            "[auth]\nenabled = true\n[[auth.keys]]\nkid = \"k1\"\nprivate_key_file = \"k1.pem\"\n",
        )
        .expect("write");
        std::fs::write(d.path().join("secret"), "0123456789abcdef0123\n").expect("write");
        std::fs::write(
            &path,
            "[auth]\nenabled = true\ncluster_secret_file = \"secret\"\n[[auth.keys]]\nkid = \"k1\"\nprivate_key_file = \"k1.pem\"\n[[auth.users]]\nname = \"a\"\npassword_hash = \"nope\"\nscopes = [\"capstan.read\"]\n",
        )
        .expect("write");
        let e = ConfigFile::read(&path).expect("read").auth().expect_err("bad hash");
        assert!(format!("{e:#}").contains("auth.users[0].password_hash"), "{e:#}");
    }
}
