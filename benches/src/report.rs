//! The report: environment lines, then sections of rows. Each engine row carries the baseline it
//! is compared with (measured in the same run), the ratio, and the target that ratio must meet.
//! Printed as a fixed-width table for humans and, on request, as markdown.

use std::fmt::Write as _;

/// What a row's ratio (value / baseline) must satisfy.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    RatioAtLeast(f64),
    RatioAtMost(f64),
}

impl Target {
    fn is_met(self, ratio: f64) -> bool {
        match self {
            Target::RatioAtLeast(min) => ratio >= min,
            Target::RatioAtMost(max) => ratio <= max,
        }
    }

    fn label(self) -> String {
        match self {
            Target::RatioAtLeast(min) => format!(">= {min:.2}x"),
            Target::RatioAtMost(max) => format!("<= {max:.2}x"),
        }
    }
}

/// The same-run measurement a row is compared with.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub name: &'static str,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: Option<Baseline>,
    pub target: Option<Target>,
    pub note: String,
}

impl Row {
    pub fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row { name: name.into(), value, unit, baseline: None, target: None, note: String::new() }
    }

    pub fn against(mut self, name: &'static str, value: f64) -> Row {
        self.baseline = Some(Baseline { name, value });
        self
    }

    pub fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        let baseline = self.baseline.as_ref()?;
        (baseline.value > 0.0).then(|| self.value / baseline.value)
    }

    /// `None` when the row has no target (informational rows).
    pub fn is_met(&self) -> Option<bool> {
        Some(self.target?.is_met(self.ratio()?))
    }
}

pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
}

#[derive(Default)]
pub struct Report {
    pub env: Vec<(String, String)>,
    pub sections: Vec<Section>,
    pub warnings: Vec<String>,
}

impl Report {
    pub fn env(&mut self, key: &str, value: impl Into<String>) {
        self.env.push((key.to_owned(), value.into()));
    }

    pub fn section(&mut self, title: &str, rows: Vec<Row>) {
        self.sections.push(Section { title: title.to_owned(), rows });
    }

    /// (targets met, targets checked).
    pub fn score(&self) -> (usize, usize) {
        let checked: Vec<bool> = self.sections.iter().flat_map(|s| &s.rows).filter_map(Row::is_met).collect();
        (checked.iter().filter(|met| **met).count(), checked.len())
    }

    /// A table per section; each row's note goes on its own line below it (notes are long).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str("== environment ==\n");
        let key_width = self.env.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in &self.env {
            let _ = writeln!(out, "  {key:<key_width$}  {value}");
        }
        let cells: Vec<Vec<[String; 7]>> = self.sections.iter().map(|s| s.rows.iter().map(cells).collect()).collect();
        let mut widths = [0usize; TABLE_COLUMNS];
        for row in
            cells.iter().flatten().map(|r| &r[..TABLE_COLUMNS]).chain([&HEADERS.map(str::to_owned)[..TABLE_COLUMNS]])
        {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for (section, rows) in self.sections.iter().zip(&cells) {
            let _ = writeln!(out, "\n== {} ==", section.title);
            push_text_line(&mut out, &HEADERS.map(str::to_owned)[..TABLE_COLUMNS], &widths);
            for row in rows {
                push_text_line(&mut out, &row[..TABLE_COLUMNS], &widths);
                let note = &row[TABLE_COLUMNS];
                if !note.is_empty() {
                    let _ = writeln!(out, "      - {note}");
                }
            }
        }
        self.push_summary(&mut out);
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# shardlog engine benchmark\n\n## Environment\n\n| | |\n|---|---|\n");
        for (key, value) in &self.env {
            let _ = writeln!(out, "| {key} | {} |", escape_md(value));
        }
        for section in &self.sections {
            let _ = write!(out, "\n## {}\n\n| {} |\n|", section.title, HEADERS.join(" | "));
            out.push_str(&"---|".repeat(HEADERS.len()));
            out.push('\n');
            for row in &section.rows {
                let row: Vec<String> = cells(row).iter().map(|c| escape_md(c)).collect();
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        out.push('\n');
        self.push_summary(&mut out);
        out
    }

    fn push_summary(&self, out: &mut String) {
        let (met, checked) = self.score();
        let _ = writeln!(out, "\ntargets met: {met}/{checked}");
        for warning in &self.warnings {
            let _ = writeln!(out, "WARNING: {warning}");
        }
    }
}

const HEADERS: [&str; 7] = ["case", "value", "baseline (same run)", "ratio", "target", "met", "note"];
/// Columns of the text table; the last header (note) is printed below each row instead.
const TABLE_COLUMNS: usize = 6;

fn cells(row: &Row) -> [String; 7] {
    let baseline = match &row.baseline {
        Some(b) => format!("{} {} ({})", format_number(b.value), row.unit, b.name),
        None => "-".to_owned(),
    };
    let ratio = row.ratio().map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
    let target = row.target.map_or_else(|| "-".to_owned(), Target::label);
    let met = match row.is_met() {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    };
    [
        row.name.clone(),
        format!("{} {}", format_number(row.value), row.unit),
        baseline,
        ratio,
        target,
        met.to_owned(),
        row.note.clone(),
    ]
}

fn push_text_line(out: &mut String, cells: &[String], widths: &[usize; TABLE_COLUMNS]) {
    out.push(' ');
    for (cell, width) in cells.iter().zip(widths) {
        let pad = width.saturating_sub(cell.chars().count());
        let _ = write!(out, " {cell}{} |", " ".repeat(pad));
    }
    out.pop();
    while out.ends_with(' ') {
        out.pop();
    }
    out.push('\n');
}

/// Three significant digits or so: enough to compare, without implying more precision than
/// a noisy VM gives.
pub fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn escape_md(cell: &str) -> String {
    cell.replace('|', "\\|")
}
