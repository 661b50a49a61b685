//! The databases and hub processes of a run, and what the bench reads about processes
//! from /proc (CPU time, memory, context switches).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Which database the hubs of a run use.
#[derive(Debug, Clone)]
pub enum Db {
    /// A fresh SQLite file in a temp dir (the embedded default).
    Sqlite,
    /// A fresh database on this PostgreSQL server (admin URL, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`).
    Postgres(String),
}

/// A fresh database for one repeat; a PostgreSQL database is dropped on drop.
pub struct Database {
    /// SQLite: the hub's data dir. PostgreSQL: uploads only.
    pub data_dir: tempfile::TempDir,
    /// `Some` on PostgreSQL.
    pub url: Option<String>,
    pg_cleanup: Option<(String, String)>,
}

impl Database {
    pub fn create(db: &Db) -> anyhow::Result<Database> {
        let data_dir = tempfile::Builder::new()
            .prefix("agenthub-bench")
            .tempdir()?;
        match db {
            Db::Sqlite => Ok(Database {
                data_dir,
                url: None,
                pg_cleanup: None,
            }),
            Db::Postgres(admin_url) => {
                let name = format!("agenthub_bench_{}", uuid::Uuid::new_v4().simple());
                psql(admin_url, &format!("CREATE DATABASE \"{name}\""))?;
                let url = match admin_url.rfind('/') {
                    Some(idx) if idx > "postgres://".len() => {
                        format!("{}/{name}", &admin_url[..idx])
                    }
                    _ => bail!("database url {admin_url} has no database path"),
                };
                Ok(Database {
                    data_dir,
                    url: Some(url),
                    pg_cleanup: Some((admin_url.clone(), name)),
                })
            }
        }
    }

    /// The `agenthub serve` arguments that select this database (`uploads` is the data
    /// dir of a hub on PostgreSQL).
    fn args(&self, uploads: &Path) -> Vec<OsString> {
        match &self.url {
            Some(url) => vec![
                "--data-dir".into(),
                uploads.into(),
                "--database-url".into(),
                url.into(),
            ],
            None => vec!["--data-dir".into(), self.data_dir.path().into()],
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.pg_cleanup {
            let _ = psql(
                admin_url,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            );
        }
    }
}

/// A hub process started for a run; killed (by PID) on drop.
pub struct HubProcess {
    bin: PathBuf,
    args: Vec<OsString>,
    child: Option<Child>,
    pub pid: u32,
    pub port: u16,
    pub base: String,
    _uploads: tempfile::TempDir,
}

impl HubProcess {
    /// Starts `agenthub serve` on `port` over `database` and waits until it listens.
    pub fn spawn(
        hub_bin: &Path,
        database: &Database,
        port: u16,
        extra_args: &[String],
    ) -> anyhow::Result<HubProcess> {
        let uploads = tempfile::Builder::new()
            .prefix("agenthub-bench")
            .tempdir()?;
        let mut args: Vec<OsString> = vec!["serve".into()];
        args.extend(database.args(uploads.path()));
        args.push("--listen".into());
        args.push(format!("127.0.0.1:{port}").into());
        args.extend(extra_args.iter().map(OsString::from));
        let mut hub = HubProcess {
            bin: hub_bin.to_path_buf(),
            args,
            child: None,
            pid: 0,
            port,
            base: format!("http://127.0.0.1:{port}"),
            _uploads: uploads,
        };
        hub.start()?;
        Ok(hub)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.bin)
            .args(&self.args)
            .env("AGENTHUB_LOG", "warn")
            // One client machine plays every agent and creator: the REST rate limit and
            // the cap on connections that have not sent a request yet are for strangers.
            // `--hub-arg` flags still win over these.
            .env("AGENTHUB_RATE_LIMIT_PER_KEY", "0")
            .env("AGENTHUB_RATE_LIMIT_PER_ADDRESS", "0")
            .env("AGENTHUB_MAX_PENDING_CONNECTIONS", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.pid = child.id();
        self.child = Some(child);
        self.wait_ready()
    }

    /// Kills the process at once (SIGKILL: a crash, no close frames).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same hub again (same database, port and flags) after [`Self::kill`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = format!("127.0.0.1:{}", self.port);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("the hub exited at start: {status}");
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the hub did not listen on {addr} within 60 s")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid)
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .arg(url)
        .arg("-qc")
        .arg(sql)
        .stdout(Stdio::null())
        .status()
        .context("running psql")?;
    if !status.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

/// One `SHOW` value of the PostgreSQL server.
pub fn pg_setting(url: &str, name: &str) -> String {
    Command::new("psql")
        .arg(url)
        .arg("-Atc")
        .arg(format!("SHOW {name}"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Counters of the run's PostgreSQL database (`pg_stat_database` and the sum of
/// `pg_stat_user_tables`): commits, rows read, index and sequential scans, rows written.
/// Read after a pause, as PostgreSQL publishes its statistics with a delay.
pub fn pg_counters(database: &Database) -> Option<[f64; 6]> {
    let url = database.url.as_ref()?;
    let (_, name) = database.pg_cleanup.as_ref()?;
    std::thread::sleep(Duration::from_millis(1500));
    let sql = format!(
        "SELECT d.xact_commit, d.tup_returned + d.tup_fetched, t.idx, t.seq, t.seq_rows, \
         d.tup_inserted + d.tup_updated + d.tup_deleted \
         FROM pg_stat_database d, (SELECT sum(idx_scan) AS idx, sum(seq_scan) AS seq, \
         sum(seq_tup_read) AS seq_rows FROM pg_stat_user_tables) t WHERE d.datname = '{name}'"
    );
    let out = Command::new("psql")
        .arg(url)
        .arg("-AtF,")
        .arg("-c")
        .arg(sql)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<f64> = text
        .trim()
        .split(',')
        .map(|value| value.parse().unwrap_or(f64::NAN))
        .collect();
    values.try_into().ok()
}

/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// user + system CPU seconds of a process (`"self"` for this one).
pub fn cpu_secs(pid: impl std::fmt::Display) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some(rest) = stat.rfind(')').map(|idx| &stat[idx + 2..]) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / TICKS_PER_S
}

fn status_field(pid: impl std::fmt::Display, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: impl std::fmt::Display) -> u64 {
    status_field(pid, "VmRSS:").unwrap_or(0)
}

/// Voluntary context switches summed over every thread of a process: how often its
/// threads went to sleep, i.e. woke up again.
pub fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| task.ok())
        .filter_map(|task| {
            let tid = task.file_name().to_string_lossy().to_string();
            status_field(format!("{pid}/task/{tid}"), "voluntary_ctxt_switches:")
        })
        .sum()
}

/// Number of threads of a process.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:").unwrap_or(0)
}

/// Raises this process's open-file limit to the hard limit (inherited by the hubs it
/// starts); returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        limit.maximum.unwrap_or(u64::MAX)
    } else {
        limit.current.unwrap_or(u64::MAX)
    }
}
