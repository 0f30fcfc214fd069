//! `eddy replay`: a recording through a config, offline, into a transcript; `--check` compares it with a
//! stored one (approval testing), `--update` rewrites that.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use eddy::replay::{self, Format, Source, Tail};

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Yaml,
    Json,
}

pub struct ReplayArgs {
    pub recording: PathBuf,
    pub format: Option<FormatArg>,
    pub out: Option<PathBuf>,
    pub check: Option<PathBuf>,
    pub update: Option<PathBuf>,
}

/// The format: as given, else by the extension of the file written or compared, else YAML.
fn format_of(arg: Option<FormatArg>, file: Option<&Path>) -> Format {
    match arg {
        Some(FormatArg::Json) => Format::Json,
        Some(FormatArg::Yaml) => Format::Yaml,
        None if file.and_then(Path::extension).is_some_and(|e| e == "json") => Format::Json,
        None => Format::Yaml,
    }
}

pub fn replay(config: &Path, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let settings = super::load(config)?;
    let file = args.check.as_deref().or(args.update.as_deref()).or(args.out.as_deref());
    let format = format_of(args.format, file);
    let source = Source::File(&args.recording);
    let cannot = || format!("cannot replay {}", args.recording.display());
    // The transcript is streamed; a file is only replaced once the whole new one is written.
    let (tail, decisions) = match (&args.check, args.update.as_deref().or(args.out.as_deref())) {
        (Some(stored), _) => {
            let new = tempfile::NamedTempFile::new().context("a temporary file for the new transcript")?;
            let replayed = replay::replay_to(&settings, source, format, new.as_file()).with_context(cannot)?;
            report(&replayed.0, replayed.1);
            return check(stored, new.path());
        }
        (None, Some(path)) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let writing = || format!("writing {}", path.display());
            let new = tempfile::NamedTempFile::new_in(dir).with_context(writing)?;
            let replayed = replay::replay_to(&settings, source, format, new.as_file()).with_context(cannot)?;
            new.persist(path).with_context(writing)?;
            if args.update.is_some() {
                eprintln!("wrote {}", path.display());
            }
            replayed
        }
        (None, None) => replay::replay_to(&settings, source, format, std::io::stdout().lock()).with_context(cannot)?,
    };
    report(&tail, decisions);
    Ok(ExitCode::SUCCESS)
}

fn report(tail: &Tail, decisions: usize) {
    for warning in &tail.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "replayed {} events: {decisions} caused something, {} timers fired in the replay, {} warnings",
        tail.recording.events,
        tail.recording.timers_fired,
        tail.warnings.len()
    );
}

/// Compares the new transcript with the stored one: byte by byte first, so a matching transcript is never
/// held in memory; both are read whole only to show how they differ.
fn check(stored: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let reading = || format!("reading {}", stored.display());
    if same_bytes(stored, new).with_context(reading)? {
        eprintln!("{}: the transcript matches", stored.display());
        return Ok(ExitCode::SUCCESS);
    }
    let old = std::fs::read_to_string(stored).with_context(reading)?;
    let text = std::fs::read_to_string(new).context("reading the new transcript")?;
    let diff = replay::diff(&old, &text, &stored.display().to_string()).unwrap_or_default();
    println!("{diff}");
    eprintln!(
        "{}: the transcript differs (- stored, + replay); `eddy replay --update {}` accepts the new one",
        stored.display(),
        stored.display()
    );
    Ok(ExitCode::FAILURE)
}

fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (BufReader::new(File::open(a)?), BufReader::new(File::open(b)?));
    loop {
        let chunk = a.fill_buf()?;
        if chunk.is_empty() {
            return Ok(b.fill_buf()?.is_empty());
        }
        let n = chunk.len().min(b.fill_buf()?.len());
        if n == 0 || chunk[..n] != b.fill_buf()?[..n] {
            return Ok(false);
        }
        a.consume(n);
        b.consume(n);
    }
}
