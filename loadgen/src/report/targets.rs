//! Targets a scenario states about its ratios, e.g. `publish_to_disk_write>=0.9` or
//! `publish_p999_to_fsync_p999<=1.5`, checked in the table and the markdown report.

use super::RunReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    AtLeast,
    AtMost,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub ratio: String,
    pub op: Op,
    pub bound: f64,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        let (ratio, op, bound) = if let Some((r, b)) = text.split_once(">=") {
            (r, Op::AtLeast, b)
        } else if let Some((r, b)) = text.split_once("<=") {
            (r, Op::AtMost, b)
        } else {
            return Err(format!("target `{text}`: expected RATIO>=X or RATIO<=X"));
        };
        let bound: f64 = bound.trim().parse().map_err(|_| format!("target `{text}`: `{bound}` is not a number"))?;
        let ratio = ratio.trim();
        if ratio.is_empty() || !ratio.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("target `{text}`: bad ratio name"));
        }
        Ok(Target { ratio: ratio.to_owned(), op, bound })
    }

    /// (measured ratio, met); `None` when the ratio was not measured (no baseline).
    pub fn check(&self, report: &RunReport) -> Option<(f64, bool)> {
        let actual = *report.results.ratios.get(&self.ratio)?;
        let met = match self.op {
            Op::AtLeast => actual >= self.bound,
            Op::AtMost => actual <= self.bound,
        };
        Some((actual, met))
    }

    pub fn describe(&self) -> String {
        let op = match self.op {
            Op::AtLeast => "≥",
            Op::AtMost => "≤",
        };
        format!("{} {op} {}", self.ratio, self.bound)
    }
}

/// Every target of a report with its outcome.
pub fn evaluate(report: &RunReport) -> Vec<(Target, Option<(f64, bool)>)> {
    report
        .config
        .targets
        .iter()
        .filter_map(|t| Target::parse(t).ok())
        .map(|t| {
            let outcome = t.check(report);
            (t, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("publish_to_disk_write>=0.9"),
            Ok(Target { ratio: "publish_to_disk_write".into(), op: Op::AtLeast, bound: 0.9 })
        );
        assert_eq!(Target::parse("x<=1.5").map(|t| t.op), Ok(Op::AtMost));
        assert!(Target::parse("x=1").is_err());
        assert!(Target::parse("x>=fast").is_err());
        assert!(Target::parse("a b>=1").is_err());
    }
}
