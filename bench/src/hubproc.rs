//! Starting a real hub process for a run, and reading its CPU time and memory from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Which database a spawned hub uses.
#[derive(Debug, Clone)]
pub enum Db {
    /// A fresh SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on this PostgreSQL server (admin URL, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`).
    Postgres(String),
}

/// A hub process started for one run; killed and cleaned up on drop.
pub struct HubProcess {
    child: Child,
    pub pid: u32,
    pub base: String,
    /// The URL or data dir the bench uses to set up the workspace.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pg_cleanup: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl HubProcess {
    pub fn spawn(
        hub_bin: &Path,
        db: &Db,
        port: u16,
        extra_args: &[String],
    ) -> anyhow::Result<HubProcess> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().to_path_buf();
        let (database_url, pg_cleanup) = match db {
            Db::Sqlite => (None, None),
            Db::Postgres(admin_url) => {
                let name = format!("agenthub_bench_{}", uuid::Uuid::new_v4().simple());
                psql(admin_url, &format!("CREATE DATABASE \"{name}\""))?;
                let url = match admin_url.rfind('/') {
                    Some(idx) => format!("{}/{name}", &admin_url[..idx]),
                    None => bail!("database url {admin_url} has no database path"),
                };
                (Some(url), Some((admin_url.clone(), name)))
            }
        };
        let mut command = Command::new(hub_bin);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if let Some(url) = &database_url {
            command.arg("--database-url").arg(url);
        }
        command
            .args(extra_args)
            .env("AGENTHUB_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", hub_bin.display()))?;
        let pid = child.id();
        let hub = HubProcess {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            database_url,
            data_dir,
            pg_cleanup,
            _dir: dir,
        };
        hub.wait_ready()?;
        Ok(hub)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.base.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the hub did not listen on {addr} within 30 s")
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
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((admin_url, name)) = &self.pg_cleanup {
            let _ = psql(
                admin_url,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            );
        }
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
    ticks / 100.0
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: impl std::fmt::Display) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
