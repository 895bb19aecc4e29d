//! `capstan task ...`: Flotilla's walk from a terminal — define a task, list definitions, run one
//! with env overrides, follow its status, stop it, read (and follow) its logs. A client of the
//! REST API (`/api/v1`), exactly as curl would be; errors are Flotilla's `{"error"}` messages.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct TaskArgs {
    /// The REST API of any node (or gateway).
    #[arg(long, env = "CAPSTAN_API", default_value = "http://127.0.0.1:8080", global = true)]
    api: String,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    user: capstan_client::secret::UserArgs,
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Create a task definition.
    Define {
        #[arg(long)]
        alias: String,
        #[arg(long = "group")]
        group_name: String,
        #[arg(long)]
        image: String,
        /// The shell command a run executes.
        #[arg(long)]
        command: String,
        /// Memory in MB.
        #[arg(long, default_value_t = 256)]
        memory: i64,
        /// NAME=VALUE, repeatable.
        #[arg(long = "env", value_parser = env_pair)]
        env: Vec<(String, String)>,
        /// Repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List task definitions (optionally those whose alias contains ALIAS).
    List {
        #[arg(long)]
        alias: Option<String>,
    },
    /// Execute a definition (by id, or --alias) on a cluster; prints the run id.
    Run {
        /// The definition id (or give --alias).
        definition_id: Option<String>,
        #[arg(long)]
        alias: Option<String>,
        #[arg(long, default_value = "default")]
        cluster: String,
        /// Env overrides NAME=VALUE, repeatable.
        #[arg(long = "env", value_parser = env_pair)]
        env: Vec<(String, String)>,
        /// Follow the run's log until it stops, then exit with its exit code.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// A run's status, exit code and times.
    Status { run_id: String },
    /// Stop a run (a queued one at once, a running one is killed).
    Stop { run_id: String },
    /// A run's log; with -f, follow it until the run has stopped.
    Logs {
        run_id: String,
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

fn env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s}")),
    }
}

fn env_json(env: &[(String, String)]) -> Value {
    Value::Array(env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect())
}

/// How often a follower polls while a run goes on.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if !status.is_success() {
            let msg = value["error"].as_str().map(str::to_owned).unwrap_or(text);
            bail!("{status}: {msg}");
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Prints the log from `token` on; returns the token to resume from.
    async fn print_logs(&self, run_id: &str, mut token: String) -> anyhow::Result<String> {
        loop {
            let v = self
                .get(&format!("/{run_id}/logs?last_seen={}", urlencode(&token)))
                .await?;
            let chunk = v["log"].as_str().unwrap_or_default();
            print!("{chunk}");
            let next = v["last_seen"].as_str().unwrap_or_default().to_owned();
            if chunk.is_empty() || next == token {
                return Ok(next);
            }
            token = next;
        }
    }

    /// Follows a run's log until it has stopped and nothing new comes; the stopped run.
    async fn follow(&self, run_id: &str) -> anyhow::Result<Value> {
        let mut token = String::new();
        loop {
            let run = self.get(&format!("/history/{run_id}")).await?;
            token = self.print_logs(run_id, token).await?;
            if run["status"] == "STOPPED" {
                // Whatever the run wrote before it stopped is in the log now.
                self.print_logs(run_id, token).await?;
                return Ok(run);
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn summary(run: &Value) -> String {
    let field = |k: &str| run[k].as_str().unwrap_or("-").to_owned();
    let exit = run["exit_code"].as_i64().map_or("-".to_owned(), |c| c.to_string());
    format!(
        "run {}  status {}  exit {}  cluster {}  cell {}\nqueued {}  started {}  finished {}{}",
        field("run_id"),
        field("status"),
        exit,
        field("cluster"),
        run["instance"]["instance_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("-"),
        field("queued_at"),
        field("started_at"),
        field("finished_at"),
        run["exit_reason"]
            .as_str()
            .map(|r| format!("\nreason {r}"))
            .unwrap_or_default()
    )
}

fn exit_code_of(run: &Value) -> i32 {
    run["exit_code"]
        .as_i64()
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(1)
}

/// A REST client that sends the user's token on every call and trusts the given CA.
fn http_client(user: &capstan_client::secret::UserArgs) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(auth) = user.authorization() {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&auth).context("--token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        b = b.default_headers(headers);
    }
    if let Some(pem) = user.ca_pem()? {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).context("--tls-ca-file")?);
    }
    Ok(b.build()?)
}

/// Runs one `capstan task` command; the process exit code (a followed run's own).
pub async fn run(args: TaskArgs) -> anyhow::Result<i32> {
    let api = Api {
        base: args.api.clone(),
        http: http_client(&args.user)?,
    };
    let out = |v: &Value, text: String| {
        if args.json {
            println!("{v}");
        } else {
            println!("{text}");
        }
    };
    match args.command {
        TaskCommand::Define {
            alias,
            group_name,
            image,
            command,
            memory,
            env,
            tags,
        } => {
            let body = json!({"alias": alias, "group_name": group_name, "image": image, "command": command,
                              "memory": memory, "env": env_json(&env), "tags": tags});
            let d = api.call(reqwest::Method::POST, "/task", Some(body)).await?;
            out(&d, d["definition_id"].as_str().unwrap_or_default().to_owned());
        }
        TaskCommand::List { alias } => {
            let path = match alias {
                Some(a) => format!("/task?alias={}", urlencode(&a)),
                None => "/task".to_owned(),
            };
            let list = api.get(&path).await?;
            let rows: Vec<String> = list["definitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    format!(
                        "{:<50} {:<24} {:<16} {:<28} {}",
                        d["definition_id"].as_str().unwrap_or_default(),
                        d["alias"].as_str().unwrap_or_default(),
                        d["group_name"].as_str().unwrap_or_default(),
                        d["image"].as_str().unwrap_or_default(),
                        d["memory"]
                    )
                })
                .collect();
            let header = format!(
                "{:<50} {:<24} {:<16} {:<28} MEMORY",
                "DEFINITION", "ALIAS", "GROUP", "IMAGE"
            );
            out(
                &list,
                std::iter::once(header).chain(rows).collect::<Vec<_>>().join("\n"),
            );
        }
        TaskCommand::Run {
            definition_id,
            alias,
            cluster,
            env,
            follow,
        } => {
            let path = match (definition_id, alias) {
                (Some(id), None) => format!("/task/{id}/execute"),
                (None, Some(a)) => format!("/task/alias/{a}/execute"),
                _ => bail!("give a definition id or --alias, not both"),
            };
            let body = json!({"cluster": cluster, "env": env_json(&env)});
            let run = api.call(reqwest::Method::PUT, &path, Some(body)).await?;
            let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
            if !follow {
                out(&run, run_id);
                return Ok(0);
            }
            eprintln!("capstan: run {run_id} queued");
            let done = api.follow(&run_id).await?;
            eprintln!("{}", summary(&done));
            return Ok(exit_code_of(&done));
        }
        TaskCommand::Status { run_id } => {
            let run = api.get(&format!("/history/{run_id}")).await?;
            out(&run, summary(&run));
        }
        TaskCommand::Stop { run_id } => {
            let run = api.get(&format!("/history/{run_id}")).await?;
            let def = run["definition_id"].as_str().unwrap_or_default();
            let stopped = api
                .call(reqwest::Method::DELETE, &format!("/task/{def}/history/{run_id}"), None)
                .await?;
            out(&stopped, format!("run {run_id}: stop asked for"));
        }
        TaskCommand::Logs { run_id, follow } => {
            if follow {
                let done = api.follow(&run_id).await?;
                return Ok(exit_code_of(&done));
            }
            api.print_logs(&run_id, String::new()).await?;
        }
    }
    Ok(0)
}
