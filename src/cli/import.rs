//! `sesame import students|staff FILE`: the registrar and HR feeds.

use std::path::Path;

use crate::accounts::provisioning::{ImportSummary, parse_staff, parse_students};
use crate::app::Admin;
use crate::audit::AuditAction;
use crate::config::Config;

/// Which feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Feed {
    Students,
    Staff,
}

impl Feed {
    fn as_str(self) -> &'static str {
        match self {
            Feed::Students => "students",
            Feed::Staff => "staff",
        }
    }
}

/// Exit code when the file was imported but some lines were rejected.
pub const EXIT_SOME_REJECTED: u8 = 3;

/// Imports `file`; returns whether every line went in.
pub async fn run(
    config: Config,
    feed: Feed,
    file: &Path,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let admin = Admin::open(config).await?;
    let input = std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let input = std::io::BufReader::new(input);
    let today = admin.clock.now().date();
    let importer = admin.importer();
    let summary = match feed {
        Feed::Students => {
            let (rows, rejected) = parse_students(input, today)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            importer.import_students(&rows, rejected, dry_run).await?
        }
        Feed::Staff => {
            let (rows, rejected) = parse_staff(input, today)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            importer.import_staff(&rows, rejected, dry_run).await?
        }
    };
    if !dry_run {
        admin
            .audit
            .record_from(
                super::operator(),
                AuditAction::FeedImported,
                Some(file.display().to_string()),
                Some("cli".into()),
                serde_json::json!({
                    "feed": feed.as_str(),
                    "created": summary.created,
                    "updated": summary.updated,
                    "unchanged": summary.unchanged,
                    "disabled": summary.disabled,
                    "rejected": summary.rejected.len(),
                }),
            )
            .await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(feed, file, &summary);
    }
    Ok(summary.rejected.is_empty())
}

fn print_summary(feed: Feed, file: &Path, summary: &ImportSummary) {
    let title = if summary.dry_run {
        "dry run, nothing was written"
    } else {
        "imported"
    };
    println!("{} feed {} ({title}):", feed.as_str(), file.display());
    for (label, count) in [
        ("created", summary.created),
        ("updated", summary.updated),
        ("unchanged", summary.unchanged),
        ("disabled", summary.disabled),
        ("rejected", summary.rejected.len() as u64),
    ] {
        println!("  {label:<10} {count:>8}");
    }
    for rejection in &summary.rejected {
        println!("line {}: {}", rejection.line, rejection.reason);
    }
}
