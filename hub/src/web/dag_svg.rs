//! The picture of a task's DAG, drawn by the hub as SVG: one box per step, coloured by
//! its status, placed in columns by depth (a step sits one column right of its deepest
//! dependency), with an arrow from each dependency to its dependent, and the assignees
//! and approval level written in the box.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::tasks::StepView;

const BOX_W: i32 = 210;
const BOX_H: i32 = 74;
const GAP_X: i32 = 60;
const GAP_Y: i32 = 24;
const MARGIN: i32 = 12;

/// The fill of a step's box. Every colour carries white text at WCAG AA contrast.
pub fn status_colour(status: &str) -> &'static str {
    match status {
        "done" => "#1a7f37",
        "failed" => "#b3261e",
        "claimed" | "running" => "#0b57d0",
        "submitted" | "awaiting_approval" | "blocked" => "#8a5a00",
        "ready" => "#4b5563",
        "cancelled" | "skipped" => "#6e7781",
        _ => "#57606a",
    }
}

/// The SVG of the steps (`<svg …>…</svg>`), with `role="img"` and a title that says in
/// words how many steps are in which status.
pub fn render(steps: &[StepView]) -> String {
    let depth = depths(steps);
    let mut columns: Vec<Vec<usize>> = Vec::new();
    for (idx, _) in steps.iter().enumerate() {
        let column = depth[idx];
        if columns.len() <= column {
            columns.resize(column + 1, Vec::new());
        }
        columns[column].push(idx);
    }
    let mut position: HashMap<&str, (i32, i32)> = HashMap::new();
    for (column_idx, column) in columns.iter().enumerate() {
        for (row_idx, &step_idx) in column.iter().enumerate() {
            let x = MARGIN + column_idx as i32 * (BOX_W + GAP_X);
            let y = MARGIN + row_idx as i32 * (BOX_H + GAP_Y);
            position.insert(steps[step_idx].step.key.as_str(), (x, y));
        }
    }
    let n_rows = columns.iter().map(Vec::len).max().unwrap_or(1).max(1) as i32;
    let width = MARGIN * 2 + columns.len().max(1) as i32 * (BOX_W + GAP_X) - GAP_X;
    let height = MARGIN * 2 + n_rows * (BOX_H + GAP_Y) - GAP_Y;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-labelledby="dag-title" class="dag-svg"><title id="dag-title">{}</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#1b1f24"/></marker></defs>"##,
        escape(&summary(steps))
    );
    for view in steps {
        let Some(&(to_x, to_y)) = position.get(view.step.key.as_str()) else {
            continue;
        };
        for dependency in &view.depends_on {
            if let Some(&(from_x, from_y)) = position.get(dependency.as_str()) {
                let _ = write!(
                    svg,
                    r##"<line class="dag-edge" data-from="{}" data-to="{}" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#1b1f24" stroke-width="1.5" marker-end="url(#arrow)"/>"##,
                    escape(dependency),
                    escape(&view.step.key),
                    from_x + BOX_W,
                    from_y + BOX_H / 2,
                    to_x - 2,
                    to_y + BOX_H / 2
                );
            }
        }
    }
    for view in steps {
        let Some(&(x, y)) = position.get(view.step.key.as_str()) else {
            continue;
        };
        let step = &view.step;
        let assignees: Vec<&str> = view
            .assignees
            .iter()
            .map(|(_, name)| name.as_str())
            .collect();
        let approval = match step.approval_level {
            0 => String::new(),
            level => format!(" · approval L{level}"),
        };
        let _ = write!(
            svg,
            r##"<g class="dag-step" data-key="{key}" data-status="{status}"><a href="#step-{key}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#1b1f24" stroke-width="1"/><text x="{tx}" y="{t1}" fill="#ffffff" font-size="13" font-weight="700">{title}</text><text x="{tx}" y="{t2}" fill="#ffffff" font-size="12">{status}{approval}</text><text x="{tx}" y="{t3}" fill="#ffffff" font-size="12">{assignees}</text></a></g>"##,
            key = escape(&step.key),
            status = escape(&step.status),
            fill = status_colour(&step.status),
            tx = x + 8,
            t1 = y + 20,
            t2 = y + 40,
            t3 = y + 60,
            title = escape(&clip(&step.title, 26)),
            approval = approval,
            assignees = escape(&clip(&assignees.join(", "), 30)),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Each step's column: 0 without dependencies, else one more than its deepest
/// dependency's. Dependencies form a DAG (checked at creation); a dependency on an
/// unknown key counts as none.
fn depths(steps: &[StepView]) -> Vec<usize> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(idx, view)| (view.step.key.as_str(), idx))
        .collect();
    let mut depth: Vec<Option<usize>> = vec![None; steps.len()];
    for start in 0..steps.len() {
        // Iterative depth-first walk: no recursion on a deep chain.
        let mut stack = vec![(start, false)];
        while let Some((idx, expanded)) = stack.pop() {
            if depth[idx].is_some() {
                continue;
            }
            let parents: Vec<usize> = steps[idx]
                .depends_on
                .iter()
                .filter_map(|key| index.get(key.as_str()).copied())
                .collect();
            if expanded || parents.iter().all(|&parent| depth[parent].is_some()) {
                let deepest = parents
                    .iter()
                    .filter_map(|&parent| depth[parent])
                    .max()
                    .map_or(0, |parent_depth| parent_depth + 1);
                depth[idx] = Some(deepest);
            } else {
                stack.push((idx, true));
                for parent in parents {
                    if depth[parent].is_none() {
                        stack.push((parent, false));
                    }
                }
            }
        }
    }
    depth.into_iter().map(Option::unwrap_or_default).collect()
}

/// "2 steps: 1 done, 1 running".
fn summary(steps: &[StepView]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for view in steps {
        match counts
            .iter_mut()
            .find(|(status, _)| *status == view.step.status)
        {
            Some((_, count)) => *count += 1,
            None => counts.push((view.step.status.as_str(), 1)),
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    format!(
        "Workflow of {} step{}: {}",
        steps.len(),
        if steps.len() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

fn clip(text: &str, max: usize) -> String {
    crate::web::excerpt(text, max)
}

/// Escapes text for SVG/XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}
