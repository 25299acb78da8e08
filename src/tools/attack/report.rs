//! What `lab attack` reports: one verdict line per scenario as it ends,
//! a table of models × scenarios when several models were attacked, and
//! the same as JSON (`--json`) or as files (`--out DIR`: `attack.json` and
//! `attack.md`, the form `docs/results/DATE-attack-...` folders keep).

use std::io;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{AttackArgs, Facts, Finding, Halt, Scenario};
use crate::tools::bench::Machine;

/// How a scenario ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Every expectation held.
    #[serde(rename = "pass")]
    Pass,
    /// At least one did not.
    #[serde(rename = "FAIL")]
    Fail,
    /// It could not be run against this server.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Outcome {
    /// The word in the verdict line and the table.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "n/a",
        }
    }
}

/// One scenario against one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    /// The model with its flags, or the address attacked.
    pub target: String,
    /// The scenario.
    pub scenario: String,
    /// Pass, FAIL or n/a.
    pub outcome: Outcome,
    /// What was done and measured, or why it was not run.
    pub says: String,
    /// What went wrong, every item; empty unless it failed.
    pub failures: Vec<String>,
    /// The measured numbers.
    pub facts: Facts,
    /// How long the scenario took, in seconds.
    pub seconds: f64,
}

impl Verdict {
    /// A scenario that was not run, and why.
    pub(super) fn not_applicable(target: &str, scenario: &Scenario, why: String) -> Verdict {
        Verdict {
            target: target.into(),
            scenario: scenario.name.into(),
            outcome: Outcome::NotApplicable,
            says: why,
            failures: Vec::new(),
            facts: Facts::new(),
            seconds: 0.0,
        }
    }

    /// The verdict on what a scenario's run came to.
    pub(super) fn of(
        target: &str,
        scenario: &Scenario,
        outcome: Result<Finding, Halt>,
        started: Instant,
    ) -> Verdict {
        let finding = match outcome {
            Ok(finding) => finding,
            Err(Halt::NotApplicable(why)) => {
                return Verdict::not_applicable(target, scenario, why);
            }
            Err(Halt::Failed(why)) => Finding {
                failures: vec![why],
                ..Finding::default()
            },
        };
        Verdict {
            target: target.into(),
            scenario: scenario.name.into(),
            outcome: if finding.failures.is_empty() {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            says: finding.says,
            failures: finding.failures,
            facts: finding.facts,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// The one line printed as the scenario ends: the outcome, and for a
    /// FAIL the first thing that went wrong before what was measured.
    pub fn line(&self) -> String {
        format!(
            "{:<4}  {:<12} {:<10} {}",
            self.outcome.word(),
            self.target,
            self.scenario,
            self.reason()
        )
    }

    /// Why the verdict is what it is, in one line.
    fn reason(&self) -> String {
        match self.failures.as_slice() {
            [] => self.says.clone(),
            [first, rest @ ..] => {
                let more = match rest.len() {
                    0 => String::new(),
                    n => format!(" (and {n} more)"),
                };
                if self.says.is_empty() {
                    format!("{first}{more}")
                } else {
                    format!("{first}{more}; {}", self.says)
                }
            }
        }
    }
}

/// Everything one `lab attack` run found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// When (UTC).
    pub date: String,
    /// Where.
    pub machine: Machine,
    /// `git describe` of the source, if known.
    pub commit: String,
    /// How it was invoked.
    pub command: String,
    /// The scale of every count.
    pub scale: f64,
    /// Whether phases were the short ones.
    pub quick: bool,
    /// One per target × scenario, in the order they ran.
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub(super) fn new(args: &AttackArgs, verdicts: Vec<Verdict>) -> Report {
        Report {
            date: crate::tools::bench::now_utc(),
            machine: crate::tools::bench::machine(),
            commit: crate::tools::bench::commit(),
            command: args.command.clone(),
            scale: args.plan.scale,
            quick: args.plan.quick,
            verdicts,
        }
    }

    /// How many verdicts are FAILs.
    pub fn failed(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|v| v.outcome == Outcome::Fail)
            .count()
    }

    /// The targets and scenarios, each once, in the order they ran.
    fn axes(&self) -> (Vec<&str>, Vec<&str>) {
        let (mut targets, mut scenarios) = (Vec::new(), Vec::new());
        for v in &self.verdicts {
            if !targets.contains(&v.target.as_str()) {
                targets.push(v.target.as_str());
            }
            if !scenarios.contains(&v.scenario.as_str()) {
                scenarios.push(v.scenario.as_str());
            }
        }
        (targets, scenarios)
    }

    fn cell(&self, target: &str, scenario: &str) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .find(|v| v.target == target && v.scenario == scenario)
    }

    /// The targets × scenarios table, in plain text; `None` when there was
    /// only one target (its verdict lines say it all).
    pub fn table(&self) -> Option<String> {
        let (targets, scenarios) = self.axes();
        if targets.len() < 2 {
            return None;
        }
        let width = targets.iter().map(|t| t.len()).max().unwrap_or(5).max(5);
        let mut out = format!("{:width$}", "model");
        for s in &scenarios {
            out.push_str(&format!("  {s:<9}"));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        for t in &targets {
            out.push_str(&format!("{t:width$}"));
            for s in &scenarios {
                let word = self.cell(t, s).map_or("", |v| v.outcome.word());
                out.push_str(&format!("  {word:<9.9}"));
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        Some(out)
    }

    /// The report as a Markdown page: how it was made, the table, then the
    /// reason for every cell that is not a pass.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut md = String::from("# lab attack report\n\n");
        md.push_str(&format!(
            "- machine: {} — {} CPUs, {:.1} GiB, Linux {}\n- date: {}\n- commit: {}\n\
             - command: `{}`\n- scale: {}{}\n\n",
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel,
            self.date,
            self.commit,
            self.command,
            self.scale,
            if self.quick { ", quick phases" } else { "" }
        ));
        let (targets, scenarios) = self.axes();
        md.push_str("| model |");
        for s in &scenarios {
            md.push_str(&format!(" {s} |"));
        }
        md.push_str("\n|---|");
        md.push_str(&":-:|".repeat(scenarios.len()));
        md.push('\n');
        for t in &targets {
            md.push_str(&format!("| {t} |"));
            for s in &scenarios {
                let cell = match self.cell(t, s).map(|v| v.outcome) {
                    Some(Outcome::Fail) => "**FAIL**",
                    Some(outcome) => outcome.word(),
                    None => "",
                };
                md.push_str(&format!(" {cell} |"));
            }
            md.push('\n');
        }
        md.push_str("\nEvery FAIL and n/a, with its reason:\n\n");
        for v in self.verdicts.iter().filter(|v| v.outcome != Outcome::Pass) {
            md.push_str(&format!(
                "- {} × {}: {} — {}\n",
                v.target,
                v.scenario,
                v.outcome.word(),
                v.reason()
            ));
        }
        md.push_str("\nWhat each pass measured:\n\n");
        for v in self.verdicts.iter().filter(|v| v.outcome == Outcome::Pass) {
            md.push_str(&format!("- {} × {}: {}\n", v.target, v.scenario, v.says));
        }
        md
    }

    /// Writes `attack.json` and `attack.md` into `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(dir.join("attack.json"), json)?;
        std::fs::write(dir.join("attack.md"), self.markdown())
    }
}
