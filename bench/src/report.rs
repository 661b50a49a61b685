//! The JSON lines (the format of ../shared/peers/README.md) and the summary table.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// One repeat of one workload.
pub struct Line {
    pub peer: String,
    pub workload: &'static str,
    pub repeat: usize,
    /// Numbers only; the table shows their medians over the repeats.
    pub metrics: Vec<(&'static str, f64)>,
    pub broker_cpu_s: f64,
    pub client_cpu_s: f64,
    pub wall_s: f64,
    /// The same for every repeat of a configuration (the table groups by it).
    pub config: String,
    /// Per-repeat details (ignored by the peers' table).
    pub extra: Value,
}

#[derive(Default)]
pub struct Report {
    out: Option<PathBuf>,
    lines: Mutex<Vec<Line>>,
}

fn round(value: f64, digits: i32) -> Value {
    if !value.is_finite() {
        return Value::Null;
    }
    let scale = 10f64.powi(digits);
    json!((value * scale).round() / scale)
}

impl Report {
    pub fn new(out: Option<PathBuf>) -> Report {
        Report {
            out,
            lines: Mutex::new(Vec::new()),
        }
    }

    /// Prints the JSON line on stdout (and appends it to `--out`).
    pub fn emit(&self, line: Line) -> anyhow::Result<()> {
        let mut metrics = Map::new();
        for (name, value) in &line.metrics {
            let digits = if value.abs() >= 100.0 { 0 } else { 3 };
            metrics.insert((*name).to_string(), round(*value, digits));
        }
        let mut value = json!({
            "peer": line.peer, "workload": line.workload, "repeat": line.repeat,
            "metrics": metrics,
            "broker_cpu_s": round(line.broker_cpu_s, 3),
            "client_cpu_s": round(line.client_cpu_s, 3),
            "wall_s": round(line.wall_s, 3),
            "config": line.config,
        });
        if let (Value::Object(map), Value::Object(extra)) = (&mut value, &line.extra) {
            for (key, val) in extra {
                map.insert(key.clone(), val.clone());
            }
        }
        println!("{value}");
        if let Some(path) = &self.out {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(file, "{value}")?;
        }
        self.lines.lock().expect("report lock").push(line);
        Ok(())
    }

    /// The summary table (medians over the repeats of each configuration), on stderr so
    /// that stdout stays JSON lines.
    pub fn print_table(&self) {
        let lines = self.lines.lock().expect("report lock");
        let mut groups: Vec<(String, &'static str, String, Vec<&Line>)> = Vec::new();
        for line in lines.iter() {
            match groups.iter_mut().find(|(peer, workload, config, _)| {
                peer == &line.peer && *workload == line.workload && config == &line.config
            }) {
                Some(group) => group.3.push(line),
                None => groups.push((
                    line.peer.clone(),
                    line.workload,
                    line.config.clone(),
                    vec![line],
                )),
            }
        }
        let mut out = String::new();
        out.push_str("\n| peer | workload | figure | median | repeats | hub CPU s | client CPU s | config |\n|---|---|---|---:|---|---:|---:|---|\n");
        for (peer, workload, config, runs) in &groups {
            let names: Vec<&'static str> = runs[0].metrics.iter().map(|(name, _)| *name).collect();
            for (row, name) in names.into_iter().enumerate() {
                let config = if row == 0 { config.as_str() } else { "″" };
                let values: Vec<f64> = runs
                    .iter()
                    .filter_map(|run| {
                        run.metrics
                            .iter()
                            .find(|(metric, _)| *metric == name)
                            .map(|(_, value)| *value)
                    })
                    .collect();
                let shown: Vec<String> = values.iter().map(|value| fmt(*value)).collect();
                out.push_str(&format!(
                    "| {peer} | {workload} | {name} | {} | {} | {:.2} | {:.2} | {config} |\n",
                    fmt(median(values.clone())),
                    shown.join(" "),
                    median(runs.iter().map(|run| run.broker_cpu_s).collect()),
                    median(runs.iter().map(|run| run.client_cpu_s).collect()),
                ));
            }
        }
        eprintln!("{out}");
    }
}

fn fmt(value: f64) -> String {
    if !value.is_finite() {
        "n/a".into()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| value.is_finite());
    values.sort_by(|a, b| a.total_cmp(b));
    percentile(&values, 50.0)
}
